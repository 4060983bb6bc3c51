"""The REST API's request and response bodies: strict (unknown fields refused), every text and list bounded, every
text free of NUL characters and lone surrogates (the database would refuse them with a server error)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from crm_store.enums import ArticleStatus, TicketPriority, TicketStatus

MAX_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"  # some character that is not whitespace


def _storable(value: str) -> str:
    """Text the database can store: valid Unicode (no lone surrogates), no NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def text(max_length: int, *, required: bool = True) -> Any:
    """A text of at most `max_length` characters; `required`: with something besides whitespace."""
    constraints = StringConstraints(min_length=1 if required else 0, max_length=max_length,
                                    pattern=NOT_BLANK if required else NO_NUL)
    return Annotated[str, constraints, AfterValidator(_storable)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def unchanged() -> Any:
    """The default of a field a PATCH may leave out (see `model_fields_set`): never validated, not in the schema."""
    return Field(default=None, json_schema_extra=_no_default)


def texts(item_length: int, *, max_items: int) -> Any:
    return Annotated[list[text(item_length)], Field(max_length=max_items)]  # type: ignore[valid-type]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResponseBody(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Error(BaseModel):
    """Every refused request (except a 422's field errors) says why in `detail`."""

    detail: str

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "No ticket 42."}]})


# --- tickets -------------------------------------------------------------------------------------------------------


class Ticket(ResponseBody):
    id: int
    conversation_id: int
    customer_id: int
    subject: str
    category: str | None
    priority: TicketPriority
    status: TicketStatus
    assignee_id: int | None
    team_id: int | None
    sla_due_at: datetime | None = Field(description="The next SLA deadline (first response, then resolution).")
    first_response_at: datetime | None
    resolved_at: datetime | None
    created_at: datetime
    context: dict[str, Any] = Field(description="What the bot tried before the handoff (reason, intents, articles).")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 42, "conversation_id": 7, "customer_id": 3, "subject": "Where is my order?", "category": None,
        "priority": "high", "status": "open", "assignee_id": 2, "team_id": 1,
        "sla_due_at": "2026-11-22T10:30:00Z", "first_response_at": "2026-11-22T10:05:00Z", "resolved_at": None,
        "created_at": "2026-11-22T10:00:00Z", "context": {"reason": "customer_asked", "intents": ["order_status"]},
    }]})


class TicketEvent(ResponseBody):
    id: int
    ticket_id: int
    kind: str
    agent_id: int | None
    actor: str
    from_value: str | None
    to_value: str | None
    note: str
    created_at: datetime


class TicketDetail(Ticket):
    events: list[TicketEvent] = Field(description="The ticket's history, oldest first.")


class TicketSummary(ResponseBody):
    """A row of the ticket list (the console's inbox)."""

    ticket_id: int
    conversation_id: int
    subject: str
    status: TicketStatus
    priority: TicketPriority
    customer_id: int
    customer_name: str
    channel: str | None
    assignee_id: int | None
    assignee_name: str | None
    team_id: int | None
    team_name: str | None
    sla_due_at: datetime | None
    overdue: bool
    last_message: str | None = Field(description="The start of the last message the customer saw or wrote.")
    last_message_at: datetime | None
    waiting_since: datetime | None
    created_at: datetime


class TicketPage(ResponseBody):
    items: list[TicketSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Message(ResponseBody):
    id: int
    conversation_id: int
    direction: str = Field(examples=["outgoing"])
    sender: str = Field(examples=["agent"])
    agent_id: int | None
    text: str
    payload: dict[str, Any]
    is_private: bool = Field(description="An internal note: never shown to the customer.")
    intent: str | None
    confidence: float | None
    kb_article_id: int | None
    delivery_status: str
    created_at: datetime


class MessagePage(ResponseBody):
    items: list[Message] = Field(description="Oldest first.")
    next_before_id: int | None = Field(description="Pass as `before_id` for older messages; null when none.")


class Reply(RequestBody):
    text: text(4000)  # type: ignore[valid-type]

    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "Your parcel left our warehouse today."}]})


class TicketChange(RequestBody):
    """Fields left out are not changed; `assignee_id: null` unassigns. Applied in this order: assignee, status,
    priority (each its own step: a refused status leaves an assignment already made)."""

    status: TicketStatus = unchanged()
    priority: TicketPriority = unchanged()
    assignee_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = unchanged()

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "pending", "priority": "high"}]})


# --- customers -----------------------------------------------------------------------------------------------------

Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$", max_length=8)]


class Identity(ResponseBody):
    id: int
    channel: str
    external_id: str
    display_name: str
    linked_at: datetime | None


class Customer(ResponseBody):
    id: int
    name: str
    email: str | None
    phone: str | None
    language: str
    tags: list[str]
    marketing_consent: bool
    marketing_consent_at: datetime | None
    external_ref: str | None
    merged_into_id: int | None = Field(description="Set when this customer was merged into another one.")
    created_at: datetime

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 3, "name": "Li Wei", "email": "li.wei@example.com", "phone": "+8613800138000", "language": "zh",
        "tags": ["vip"], "marketing_consent": False, "marketing_consent_at": None, "external_ref": "shop-1001",
        "merged_into_id": None, "created_at": "2026-11-01T08:00:00Z",
    }]})


class CustomerDetail(Customer):
    identities: list[Identity]


class CustomerPage(ResponseBody):
    items: list[Customer]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class NewCustomer(RequestBody):
    name: text(200, required=False) = ""  # type: ignore[valid-type]
    email: text(254, required=False) | None = None  # type: ignore[valid-type]
    phone: text(40, required=False) | None = None  # type: ignore[valid-type]
    language: Language = "en"
    tags: texts(50, max_items=20) = []  # type: ignore[valid-type]
    marketing_consent: bool = False
    external_ref: text(100) | None = Field(None, description="Your system's id for the customer; unique.")  # type: ignore[valid-type]

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Li Wei", "email": "li.wei@example.com", "phone": "+8613800138000", "language": "zh"},
    ]})


class CustomerChange(RequestBody):
    """Fields left out are not changed; `email` and `phone` may be null to remove them."""

    name: text(200, required=False) = unchanged()  # type: ignore[valid-type]
    email: text(254, required=False) | None = unchanged()  # type: ignore[valid-type]
    phone: text(40, required=False) | None = unchanged()  # type: ignore[valid-type]
    language: Language = unchanged()
    tags: texts(50, max_items=20) = unchanged()  # type: ignore[valid-type]


class TimelineEntry(ResponseBody):
    at: datetime
    kind: str = Field(examples=["message.customer", "ticket.resolved", "order", "points.earn"])
    summary: str
    ref_id: int
    data: dict[str, Any]


# --- knowledge base ------------------------------------------------------------------------------------------------

ArticleLanguage = Annotated[str, StringConstraints(pattern=r"^(en|zh)$")]


class Article(ResponseBody):
    id: int
    external_id: str | None
    language: str
    question: str
    alt_questions: list[str]
    answer: str = Field(description="Markdown.")
    tags: list[str]
    status: ArticleStatus
    version: int
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 12, "external_id": "faq-returns", "language": "en", "question": "How do I return an item?",
        "alt_questions": ["Can I send it back?"], "answer": "Within 30 days, from **My orders**.", "tags": ["returns"],
        "status": "published", "version": 2, "created_at": "2026-10-01T08:00:00Z",
        "updated_at": "2026-11-01T08:00:00Z", "published_at": "2026-10-01T08:00:00Z",
    }]})


class ArticlePage(ResponseBody):
    items: list[Article]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class NewArticle(RequestBody):
    question: text(1000)  # type: ignore[valid-type]
    answer: text(20_000) = Field(description="Markdown.")  # type: ignore[valid-type]
    language: ArticleLanguage
    alt_questions: texts(1000, max_items=50) = []  # type: ignore[valid-type]
    tags: texts(50, max_items=20) = []  # type: ignore[valid-type]
    status: ArticleStatus = Field(ArticleStatus.DRAFT, description="`published` makes it searchable at once.")
    external_id: text(200) | None = Field(None, description="Your system's id for the article; unique.")  # type: ignore[valid-type]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "question": "How do I return an item?", "answer": "Within 30 days, from **My orders**.", "language": "en",
        "alt_questions": ["Can I send it back?"], "tags": ["returns"],
    }]})


class ArticleChange(RequestBody):
    """Fields left out are not changed; a real change of a published article makes a new version at once."""

    question: text(1000) = unchanged()  # type: ignore[valid-type]
    answer: text(20_000) = unchanged()  # type: ignore[valid-type]
    language: ArticleLanguage = unchanged()
    alt_questions: texts(1000, max_items=50) = unchanged()  # type: ignore[valid-type]
    tags: texts(50, max_items=20) = unchanged()  # type: ignore[valid-type]
