"""SQLAlchemy models of the CRM domain (after Chatwoot's, adapted): one metadata, one Alembic chain."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from crm_store.coltypes import UTCDateTime, utcnow
from crm_store.enums import (
    Actor,
    AgentRole,
    ArticleStatus,
    CampaignKind,
    CampaignStatus,
    Channel,
    ConversationStatus,
    DeliveryStatus,
    EnrollmentStatus,
    InvitationStatus,
    LoyaltyTransactionKind,
    MessageDirection,
    OrderStatus,
    PrivacyRequestStatus,
    ProposalSource,
    ProposalStatus,
    RecipientStatus,
    RedemptionStatus,
    SenderType,
    SurveyKind,
    TicketEventKind,
    TicketPriority,
    TicketStatus,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


ACTIVE_TICKETS_SQL = "status IN ('new', 'open', 'pending')"


def enum_column(enum: type, **kwargs: Any) -> Any:
    """A portable enum column: VARCHAR holding the StrEnum's value (no native PostgreSQL type to migrate)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
        **kwargs,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- people -----------------------------------------------------------------------------------------------


class Team(TimestampMixin, Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class Agent(TimestampMixin, Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[AgentRole] = mapped_column(enum_column(AgentRole), default=AgentRole.AGENT)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), index=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    # Round-robin assignment: the agent given a ticket longest ago is next.
    last_assigned_at: Mapped[datetime | None]

    team: Mapped[Team | None] = relationship(lazy="raise")


class AgentSession(Base):
    """A signed-in console session: the cookie holds a random token, the store only its hash."""

    __tablename__ = "agent_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))  # every form and HTMX request of the session carries it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")


class ApiToken(Base):
    """An admin-issued token for the REST API (`Authorization: Bearer ...`); only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # the first characters, to recognise a token in a list
    scopes: Mapped[list[str]] = mapped_column(default=list)  # e.g. ["tickets:read", "messages:write"]
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class CannedResponse(TimestampMixin, Base):
    """A saved reply; its body may hold variables such as {customer.name}, {agent.name}, {ticket.id}."""

    __tablename__ = "canned_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    shortcut: Mapped[str] = mapped_column(String(50), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8), default="en")
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class SlaPolicy(TimestampMixin, Base):
    """First-response and resolution targets for a ticket priority, optionally for one loyalty tier only (a tier's
    row wins over the tier-less one)."""

    __tablename__ = "sla_policies"
    __table_args__ = (UniqueConstraint("priority", "tier_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    priority: Mapped[TicketPriority] = mapped_column(enum_column(TicketPriority))
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("loyalty_tiers.id", ondelete="CASCADE"))
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)


class AppSetting(Base):
    """A console setting changed by an admin (assignment strategy, ...): one JSON value per key."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class Customer(TimestampMixin, Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    # Normalized forms used to find and de-duplicate customers (lower-cased e-mail, E.164 phone).
    email_normalized: Mapped[str | None] = mapped_column(String(254), index=True)
    phone_normalized: Mapped[str | None] = mapped_column(String(40), index=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    tags: Mapped[list[str]] = mapped_column(default=list)
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    marketing_consent_at: Mapped[datetime | None]
    external_ref: Mapped[str | None] = mapped_column(String(100), unique=True)
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    merged_at: Mapped[datetime | None]
    erased_at: Mapped[datetime | None]  # personal data removed (crm_store.services.privacy): the row is a husk

    identities: Mapped[list[ChannelIdentity]] = relationship(back_populates="customer", lazy="raise")


class LinkToken(Base):
    """A one-time code an agent creates so a customer can link a chat to their CRM record
    (`/start link_<token>` on Telegram, `/link <token>` in the web chat). Only its hash is stored."""

    __tablename__ = "link_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identities.id", ondelete="SET NULL"))


class CustomerMerge(Base):
    """One merge, kept for the record: `source` was merged into `target` by an agent (None: the system, e.g. a
    chat linked by its customer, or an import), with how many rows of each kind moved."""

    __tablename__ = "customer_merges"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    moved: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"orders": 2, "conversations": 1, ...}
    merged_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelIdentity(Base):
    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    channel: Mapped[Channel] = mapped_column(enum_column(Channel))
    external_id: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    linked_at: Mapped[datetime | None]

    customer: Mapped[Customer] = relationship(back_populates="identities", lazy="raise")


# --- conversations --------------------------------------------------------------------------------------


class Conversation(TimestampMixin, Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_status_waiting", "status", "waiting_since"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel_identities.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[ConversationStatus] = mapped_column(
        enum_column(ConversationStatus), default=ConversationStatus.BOT
    )
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), index=True)
    priority: Mapped[TicketPriority] = mapped_column(enum_column(TicketPriority), default=TicketPriority.NORMAL)
    waiting_since: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    last_message_at: Mapped[datetime | None]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_created", "conversation_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[MessageDirection] = mapped_column(enum_column(MessageDirection))
    sender: Mapped[SenderType] = mapped_column(enum_column(SenderType))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    text: Mapped[str] = mapped_column(Text, default="")
    # Buttons, quick replies and attachments, as the channel-neutral structure the bot renders.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_private: Mapped[bool] = mapped_column(Boolean, default=False)
    intent: Mapped[str | None] = mapped_column(String(100))
    confidence: Mapped[float | None]
    kb_article_id: Mapped[int | None] = mapped_column(Integer)
    delivery_status: Mapped[DeliveryStatus] = mapped_column(
        enum_column(DeliveryStatus), default=DeliveryStatus.RECEIVED
    )
    # The channel's own id of this message (Telegram message_id, web-chat client id).
    channel_message_id: Mapped[str | None] = mapped_column(String(128))
    # Unique: a redelivered update (same channel, chat and message id) is stored once.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- tickets ---------------------------------------------------------------------------------------------


class Ticket(TimestampMixin, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_status_sla", "status", "sla_due_at"),
        Index("ix_tickets_assignee_status_sla", "assignee_id", "status", "sla_due_at"),
        Index("ix_tickets_team_status_sla", "team_id", "status", "sla_due_at"),
        # The inbox's default view (every active ticket by due time) reads this in order and stops at a page.
        Index("ix_tickets_active_due", "sla_due_at", "id", postgresql_where=text(ACTIVE_TICKETS_SQL),
              sqlite_where=text(ACTIVE_TICKETS_SQL)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(String(300), default="")
    category: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[TicketPriority] = mapped_column(enum_column(TicketPriority), default=TicketPriority.NORMAL)
    status: Mapped[TicketStatus] = mapped_column(enum_column(TicketStatus), default=TicketStatus.NEW)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), index=True)
    # The next SLA deadline: the first-response target until an agent answered, then the resolution target.
    sla_due_at: Mapped[datetime | None]
    first_response_due_at: Mapped[datetime | None]
    resolution_due_at: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    # The customer's chat channel (for the inbox's channel filter without a join).
    channel: Mapped[Channel | None] = mapped_column(enum_column(Channel))
    # What the bot had tried before the handoff: {"reason", "intents": [...], "articles": [...], "tier"}.
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TicketEvent(Base):
    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[TicketEventKind] = mapped_column(enum_column(TicketEventKind))
    # Who: an agent, or nobody (the bot / the system).
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(32), default="system")
    from_value: Mapped[str | None] = mapped_column(String(200))
    to_value: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- loyalty ---------------------------------------------------------------------------------------------


class LoyaltyTier(Base):
    __tablename__ = "loyalty_tiers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Lifetime points needed to reach this tier.
    threshold: Mapped[int] = mapped_column(Integer, unique=True)
    benefits: Mapped[list[str]] = mapped_column(default=list)
    names: Mapped[dict[str, Any]] = mapped_column(default=dict)  # translations: {"zh": "金卡"}
    # Tickets of this tier's members get at least this priority (VIP first); None: no rule.
    handoff_priority: Mapped[TicketPriority | None] = mapped_column(enum_column(TicketPriority))


class LoyaltyAccount(TimestampMixin, Base):
    __tablename__ = "loyalty_accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), unique=True)
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("loyalty_tiers.id", ondelete="SET NULL"))
    # Cached sums of the ledger, kept in the same transaction as every ledger row.
    balance: Mapped[int] = mapped_column(Integer, default=0)
    lifetime_points: Mapped[int] = mapped_column(Integer, default=0)


class LoyaltyTransaction(Base):
    __tablename__ = "loyalty_transactions"
    __table_args__ = (Index("ix_loyalty_transactions_account_created", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("loyalty_accounts.id", ondelete="CASCADE"))
    kind: Mapped[LoyaltyTransactionKind] = mapped_column(enum_column(LoyaltyTransactionKind))
    points: Mapped[int] = mapped_column(Integer)  # signed: earn > 0, redeem/expire < 0, adjust either
    reason: Mapped[str] = mapped_column(String(300), default="")
    order_ref: Mapped[str | None] = mapped_column(String(100), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reward(TimestampMixin, Base):
    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        CheckConstraint("cost > 0", name="cost_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    names: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    cost: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int | None] = mapped_column(Integer)  # None: unlimited
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    min_tier_id: Mapped[int | None] = mapped_column(ForeignKey("loyalty_tiers.id", ondelete="SET NULL"))


class Redemption(Base):
    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("loyalty_accounts.id", ondelete="CASCADE"), index=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id", ondelete="RESTRICT"), index=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("loyalty_transactions.id", ondelete="CASCADE"))
    points: Mapped[int] = mapped_column(Integer)
    status: Mapped[RedemptionStatus] = mapped_column(
        enum_column(RedemptionStatus), default=RedemptionStatus.CONFIRMED
    )
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- commerce --------------------------------------------------------------------------------------------


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer_placed", "customer_id", "placed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    external_ref: Mapped[str] = mapped_column(String(100), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    placed_at: Mapped[datetime]
    status: Mapped[OrderStatus] = mapped_column(enum_column(OrderStatus), default=OrderStatus.PAID)
    items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    points_awarded: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- knowledge base --------------------------------------------------------------------------------------


class KbArticle(TimestampMixin, Base):
    __tablename__ = "kb_articles"
    __table_args__ = (Index("ix_kb_articles_status_language", "status", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The article's id in the import file, so a re-import updates it in place.
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    question: Mapped[str] = mapped_column(Text)
    alt_questions: Mapped[list[str]] = mapped_column(default=list)
    answer: Mapped[str] = mapped_column(Text)  # Markdown
    tags: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[ArticleStatus] = mapped_column(enum_column(ArticleStatus), default=ArticleStatus.DRAFT)
    # +1 on every change of what is indexed (question, alt questions, answer, language, tags): cached vectors
    # are keyed by it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    published_at: Mapped[datetime | None]  # when it was last published
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    updated_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class KbArticleVector(Base):
    """The embeddings of one version of an article by one encoder, computed once and cached."""

    __tablename__ = "kb_article_vectors"
    __table_args__ = (UniqueConstraint("article_id", "version", "model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))  # the encoder's name
    dim: Mapped[int] = mapped_column(Integer)
    # One row per text of the article (question, each alternative question, answer).
    count: Mapped[int] = mapped_column(Integer)
    vectors: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian, row-major, count x dim
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbState(Base):
    """One row: the knowledge base's revision, bumped with every change that affects search, so other
    processes can tell that their index is stale."""

    __tablename__ = "kb_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbGlossaryTerm(TimestampMixin, Base):
    """A domain term of the knowledge base and the words customers use for it, edited by admins: the search keeps
    the term whole and reads each synonym as the term. A change bumps the KB revision, as an article's does."""

    __tablename__ = "kb_glossary_terms"
    __table_args__ = (UniqueConstraint("language", "term"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    language: Mapped[str] = mapped_column(String(8))  # "en" or "zh"
    term: Mapped[str] = mapped_column(String(40))
    synonyms: Mapped[list[str]] = mapped_column(default=list)
    updated_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class KbPhrasingProposal(Base):
    """A customer's question proposed as another phrasing (alternative question) of the article that answered it,
    waiting for a supervisor: accepted, it joins the article's alternative questions; rejected, it is never
    proposed for that article again."""

    __tablename__ = "kb_phrasing_proposals"
    __table_args__ = (Index("ix_kb_phrasing_proposals_status_language", "status", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(String(8))  # the article's
    text: Mapped[str] = mapped_column(Text)  # the customer's question, as they wrote it (trimmed)
    source: Mapped[ProposalSource] = mapped_column(enum_column(ProposalSource))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), index=True)
    status: Mapped[ProposalStatus] = mapped_column(enum_column(ProposalStatus), default=ProposalStatus.PENDING)
    proposed_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    decided_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


# --- surveys ---------------------------------------------------------------------------------------------


class Survey(TimestampMixin, Base):
    """A CSAT or NPS questionnaire. `questions` is a list of {"id", "kind", "prompt": {"en", "zh"}, "optional",
    "min", "max", "options"}; the first rating question gives the invitation's score."""

    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[SurveyKind] = mapped_column(enum_column(SurveyKind))
    title: Mapped[str] = mapped_column(String(200))
    questions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # An invitation can be answered for this long after it was sent.
    expires_after_hours: Mapped[int] = mapped_column(Integer, default=72)


class SurveyInvitation(Base):
    """One survey sent to one customer (for a resolved ticket, or by a campaign); answered at most once."""

    __tablename__ = "survey_invitations"
    __table_args__ = (Index("ix_survey_invitations_survey_status", "survey_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    campaign: Mapped[str | None] = mapped_column(String(100), index=True)
    channel: Mapped[Channel | None] = mapped_column(enum_column(Channel))
    external_id: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(8), default="en")
    # Unique: the same survey reaches a customer once per ticket (CSAT) or once per campaign (NPS).
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[InvitationStatus] = mapped_column(enum_column(InvitationStatus), default=InvitationStatus.SENT)
    score: Mapped[int | None] = mapped_column(Integer)  # the answer to the first rating question
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]  # when the first answer came
    completed_at: Mapped[datetime | None]


class SurveyAnswer(Base):
    __tablename__ = "survey_answers"
    __table_args__ = (UniqueConstraint("invitation_id", "question_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invitation_id: Mapped[int] = mapped_column(ForeignKey("survey_invitations.id", ondelete="CASCADE"))
    question_id: Mapped[str] = mapped_column(String(50))
    value_int: Mapped[int | None] = mapped_column(Integer)
    value_text: Mapped[str | None] = mapped_column(Text)  # a comment, a choice; None with skipped
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- training --------------------------------------------------------------------------------------------


class Course(TimestampMixin, Base):
    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[bool] = mapped_column(Boolean, default=False)


class Lesson(TimestampMixin, Base):
    __tablename__ = "lessons"
    __table_args__ = (UniqueConstraint("course_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, ...: the order lessons are delivered in
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")  # Markdown
    image_url: Mapped[str | None] = mapped_column(String(500))
    link_url: Mapped[str | None] = mapped_column(String(500))


class QuizQuestion(Base):
    __tablename__ = "quiz_questions"
    __table_args__ = (UniqueConstraint("lesson_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    options: Mapped[list[str]] = mapped_column(default=list)
    correct_option: Mapped[int] = mapped_column(Integer)  # index into options
    explanation: Mapped[str] = mapped_column(Text, default="")


class Enrollment(Base):
    """A customer taking a course: where they are, so they can continue where they left off."""

    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("course_id", "customer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    status: Mapped[EnrollmentStatus] = mapped_column(
        enum_column(EnrollmentStatus), default=EnrollmentStatus.IN_PROGRESS
    )
    current_position: Mapped[int] = mapped_column(Integer, default=1)  # the lesson being studied
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class LessonCompletion(Base):
    __tablename__ = "lesson_completions"
    __table_args__ = (UniqueConstraint("enrollment_id", "lesson_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    completed_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuizAnswer(Base):
    __tablename__ = "quiz_answers"
    __table_args__ = (UniqueConstraint("enrollment_id", "question_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    question_id: Mapped[int] = mapped_column(ForeignKey("quiz_questions.id", ondelete="CASCADE"))
    chosen_option: Mapped[int] = mapped_column(Integer)
    correct: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- channels' raw updates ----------------------------------------------------------------------------------


class InboundUpdate(Base):
    """A channel's raw update (a Telegram Update), stored before the channel is told it arrived: an update is
    acknowledged only once it is here, and handled (then marked) from here, so a crash loses nothing and a
    redelivery is recognised."""

    __tablename__ = "inbound_updates"
    __table_args__ = (
        UniqueConstraint("channel", "bot_id", "update_id"),
        # The redrive scan: unhandled updates, oldest first.
        Index("ix_inbound_updates_unhandled", "received_at", postgresql_where=text("handled_at IS NULL"),
              sqlite_where=text("handled_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    # The receiving bot (Telegram: the numeric id in its token), since update ids are per bot.
    bot_id: Mapped[str] = mapped_column(String(64))
    update_id: Mapped[int] = mapped_column(BigInteger)
    chat_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set while a process handles it (a lease: a process that died leaves it to be taken over).
    claimed_at: Mapped[datetime | None]
    handled_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


# --- segments ------------------------------------------------------------------------------------------------


class Segment(TimestampMixin, Base):
    """A saved group of customers: a rule tree (crm_store/segments.py) evaluated whenever it is used."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class Campaign(TimestampMixin, Base):
    """A survey, a course invitation or a message sent to a segment's consenting customers, a batch at a time: the
    cursor is the last customer id handled, moved in the same transaction as that batch's recipients (a crash
    loses nothing and repeats nothing)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Tags the campaign's survey invitations (SurveyInvitation.campaign) and messages' idempotency keys.
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[CampaignKind] = mapped_column(enum_column(CampaignKind))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id", ondelete="SET NULL"))
    # The segment's rules as they were at launch (a later edit of the segment does not move a running campaign).
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("surveys.id", ondelete="SET NULL"))
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id", ondelete="SET NULL"))
    message: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"en": text, "zh": text}
    channels: Mapped[list[str]] = mapped_column(default=list)
    # Quiet hours, in the campaign's time zone: nothing is sent from quiet_start to quiet_end (hours 0-23).
    quiet_start: Mapped[int | None] = mapped_column(Integer)
    quiet_end: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    per_second: Mapped[int] = mapped_column(Integer, default=20)
    status: Mapped[CampaignStatus] = mapped_column(enum_column(CampaignStatus), default=CampaignStatus.DRAFT)
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    # The timer's next batch is not before this: one batch a second whatever the number of workers.
    next_batch_at: Mapped[datetime | None]
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    launched_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class CampaignRecipient(Base):
    __tablename__ = "campaign_recipients"
    __table_args__ = (UniqueConstraint("campaign_id", "customer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    status: Mapped[RecipientStatus] = mapped_column(enum_column(RecipientStatus))
    channel: Mapped[Channel | None] = mapped_column(enum_column(Channel))
    invitation_id: Mapped[int | None] = mapped_column(ForeignKey("survey_invitations.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- privacy and audit ----------------------------------------------------------------------------------------------


class PrivacyRequest(Base):
    """A customer's request, from the chat, to have their personal data erased; an admin carries it out."""

    __tablename__ = "privacy_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    channel: Mapped[Channel | None] = mapped_column(enum_column(Channel))
    status: Mapped[PrivacyRequestStatus] = mapped_column(
        enum_column(PrivacyRequestStatus), default=PrivacyRequestStatus.PENDING
    )
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class AuditEntry(Base):
    """Who did what to whom, append-only: database triggers refuse UPDATE and DELETE (migration 0009).

    No foreign keys: an entry outlives the agent or the customer it names, and holds no customer's personal data
    (a customer is named by id), so an erasure never needs to touch it."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[Actor] = mapped_column(enum_column(Actor))
    agent_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor_label: Mapped[str] = mapped_column(String(254), default="")  # the agent's e-mail or token's name then
    action: Mapped[str] = mapped_column(String(50), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(30))  # customer, agent, setting, token
    subject_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str] = mapped_column(String(64), default="")
