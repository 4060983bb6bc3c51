"""What goes in and out of the dialogue engine, whatever the channel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["answer", "suggest", "no_answer", "handoff", "flow", "relay"]
MAX_PAYLOAD_NUMBER = 2**31 - 1  # ids are 32-bit integers in PostgreSQL: a larger one cannot even be looked up


def payload_number(raw: str) -> int:
    """An id (or an option's index) carried in a button's payload; ValueError unless it is one that can exist
    (a stale or forged button: the web chat's payloads come from the visitor's browser)."""
    number = int(raw)
    if not 0 <= number <= MAX_PAYLOAD_NUMBER:
        raise ValueError(f"not an id: {raw!r}")
    return number


@dataclass(frozen=True)
class Incoming:
    """A customer's message or button press on a channel."""

    channel: str  # crm_store.enums.Channel value: telegram, webchat
    external_id: str  # the chat / visitor id on that channel
    text: str = ""
    payload: str | None = None  # a pressed button's payload (callback data)
    message_id: str | None = None  # the channel's own id (Telegram: update id), makes redelivery idempotent
    display_name: str = ""
    language_code: str | None = None  # the channel's hint (Telegram's user.language_code)
    # A contact card the user shared ("share my phone"): its number when it is the sender's own, "other" when not.
    # Only Telegram vouches for whose card it is; a button payload never stands for one (anyone can forge those).
    shared_contact: str | None = None


@dataclass(frozen=True)
class Button:
    label: str
    payload: str


@dataclass(frozen=True)
class Reply:
    """One bot message, and what produced it."""

    text: str
    buttons: tuple[Button, ...] = ()
    decision: Decision = "flow"
    intent: str | None = None
    confidence: float | None = None
    article_id: int | None = None
    article_external_id: str | None = None
    message_id: int | None = None  # the CRM store's id once recorded
    request_contact: str | None = None  # Telegram: a "share my phone number" keyboard button with this label
    remove_keyboard: bool = False  # Telegram: take that keyboard away again
    image_url: str | None = None  # an image shown with the text (a lesson's picture)
    markdown: bool = False  # the text is Markdown (a KB answer, a lesson): channels render it

    def payload(self) -> dict[str, Any]:
        """What is stored with the message besides its text, and travels with a pushed message."""
        data: dict[str, Any] = {"buttons": [{"label": b.label, "payload": b.payload} for b in self.buttons],
                                "decision": self.decision}
        if self.image_url:
            data["image_url"] = self.image_url
        if self.markdown:
            data["markdown"] = True
        return data

    @classmethod
    def from_payload(cls, text: str, payload: dict[str, Any], *, message_id: int | None = None) -> Reply:
        """A stored or pushed message back as a Reply (for the channel that delivers it)."""
        buttons = tuple(Button(str(b["label"]), str(b["payload"])) for b in payload.get("buttons", []))
        return cls(text, buttons, decision=payload.get("decision", "flow"), image_url=payload.get("image_url"),
                   markdown=bool(payload.get("markdown")), message_id=message_id)

    def to_json(self) -> dict[str, Any]:
        """The web chat's JSON of the reply; a Markdown text comes with its safe HTML rendering too."""
        from bot.markdown import to_html

        return {
            "text": self.text, "buttons": [{"label": b.label, "payload": b.payload} for b in self.buttons],
            "decision": self.decision, "intent": self.intent, "confidence": self.confidence,
            "article_id": self.article_id, "article_external_id": self.article_external_id,
            "message_id": self.message_id, "image_url": self.image_url,
            "html": to_html(self.text) if self.markdown else None,
        }


@dataclass(frozen=True)
class Outcome:
    replies: tuple[Reply, ...]
    conversation_id: int
    customer_id: int
    language: str
    duplicate: bool = False  # the channel redelivered a message already handled: nothing is answered again
    relayed: bool = False  # an agent owns the conversation: the message went to them, the bot stays silent
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)
