"""Domain events: what happened in the CRM, published on the event bus after the transaction commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field

from crm_store.coltypes import utcnow

_REGISTRY: dict[str, type[DomainEvent]] = {}


class DomainEvent(BaseModel):
    """Base of every event; `name` is its stable wire name."""

    model_config = ConfigDict(frozen=True)

    name: ClassVar[str] = ""
    event_id: str = Field(default_factory=lambda: uuid4().hex)
    occurred_at: datetime = Field(default_factory=utcnow)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in _REGISTRY:
                raise TypeError(f"duplicate event name {cls.name!r}")
            _REGISTRY[cls.name] = cls

    def to_wire(self) -> dict[str, str]:
        return {"type": self.name, "data": self.model_dump_json()}

    @staticmethod
    def from_wire(fields: dict[str, Any]) -> DomainEvent:
        type_name = _text(fields["type"])
        try:
            cls = _REGISTRY[type_name]
        except KeyError:
            raise UnknownEvent(type_name) from None
        return cls.model_validate_json(_text(fields["data"]))


class UnknownEvent(ValueError):
    """An event name this process does not know (a newer producer); it is acknowledged and skipped."""


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def event_types() -> dict[str, type[DomainEvent]]:
    return dict(_REGISTRY)


class CustomerCreated(DomainEvent):
    name: ClassVar[str] = "customer.created"
    customer_id: int


class CustomerUpdated(DomainEvent):
    name: ClassVar[str] = "customer.updated"
    customer_id: int


class IdentityLinked(DomainEvent):
    name: ClassVar[str] = "customer.identity_linked"
    customer_id: int
    identity_id: int
    channel: str


class CustomersMerged(DomainEvent):
    name: ClassVar[str] = "customer.merged"
    source_id: int
    target_id: int
    agent_id: int | None = None  # None: merged by the system (a linked chat, an import)


class CustomerErased(DomainEvent):
    """A customer's personal data was erased: processes drop what they hold of it (caches, chat state)."""

    name: ClassVar[str] = "customer.erased"
    customer_ids: list[int]
    conversation_ids: list[int]
    chats: list[tuple[str, str]]  # (channel, external id) of the chats whose identities were removed


class MessageReceived(DomainEvent):
    name: ClassVar[str] = "message.received"
    conversation_id: int
    message_id: int
    customer_id: int
    channel: str
    conversation_status: str


class BotReplied(DomainEvent):
    name: ClassVar[str] = "message.bot_replied"
    conversation_id: int
    message_id: int
    customer_id: int


class AgentReplied(DomainEvent):
    """An agent's reply, to be delivered to the customer's chat (channel + external id)."""

    name: ClassVar[str] = "message.agent_replied"
    conversation_id: int
    message_id: int
    customer_id: int
    agent_id: int | None
    channel: str | None
    external_id: str | None
    text: str


class NoteAdded(DomainEvent):
    name: ClassVar[str] = "message.note_added"
    conversation_id: int
    message_id: int
    agent_id: int | None


class HandoffRequested(DomainEvent):
    name: ClassVar[str] = "conversation.handoff_requested"
    conversation_id: int
    ticket_id: int
    customer_id: int
    reason: str


class TicketUpdated(DomainEvent):
    name: ClassVar[str] = "ticket.updated"
    ticket_id: int
    conversation_id: int
    kind: str
    from_value: str | None = None
    to_value: str | None = None
    agent_id: int | None = None


class TicketResolved(DomainEvent):
    name: ClassVar[str] = "ticket.resolved"
    ticket_id: int
    conversation_id: int
    customer_id: int
    agent_id: int | None


class PointsChanged(DomainEvent):
    name: ClassVar[str] = "loyalty.points_changed"
    customer_id: int
    account_id: int
    delta: int
    balance: int
    kind: str


class TierChanged(DomainEvent):
    name: ClassVar[str] = "loyalty.tier_changed"
    customer_id: int
    from_tier: str | None
    to_tier: str | None


class RewardRedeemed(DomainEvent):
    name: ClassVar[str] = "loyalty.reward_redeemed"
    customer_id: int
    redemption_id: int
    reward_id: int
    points: int


class KnowledgeBaseChanged(DomainEvent):
    """Published articles changed: indexes built before `revision` are stale."""

    name: ClassVar[str] = "kb.changed"
    revision: int
    article_ids: list[int]
    action: str  # created | updated | published | unpublished | archived | imported



class BotPushed(DomainEvent):
    """A message the bot starts (a survey, a lesson reminder, a campaign message), not an answer to the
    customer's last message: the channel holding the chat (channel + external id) delivers it."""

    name: ClassVar[str] = "message.bot_pushed"
    conversation_id: int
    message_id: int
    customer_id: int
    channel: str | None
    external_id: str | None
    text: str
    # The channel-neutral reply: {"buttons": [{"label", "payload"}], "image_url", ...}.
    payload: dict[str, Any] = Field(default_factory=dict)


class SurveyInvited(DomainEvent):
    """A survey was sent to a customer (CSAT after a resolved ticket, or by a campaign): the bot asks it."""

    name: ClassVar[str] = "survey.invited"
    invitation_id: int
    survey_id: int
    customer_id: int
    kind: str
    conversation_id: int | None
    channel: str | None
    external_id: str | None


class SurveyAnswered(DomainEvent):
    name: ClassVar[str] = "survey.answered"
    invitation_id: int
    survey_id: int
    customer_id: int
    question_id: str
    score: int | None
    completed: bool


class CourseStarted(DomainEvent):
    name: ClassVar[str] = "course.started"
    enrollment_id: int
    course_id: int
    customer_id: int


class LessonCompleted(DomainEvent):
    name: ClassVar[str] = "course.lesson_completed"
    enrollment_id: int
    course_id: int
    customer_id: int
    lesson_id: int


class CourseCompleted(DomainEvent):
    name: ClassVar[str] = "course.completed"
    enrollment_id: int
    course_id: int
    customer_id: int
