"""Every enumeration of the CRM domain, in one module."""

from enum import StrEnum


class Channel(StrEnum):
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"
    EMAIL = "email"
    IMPORT = "import"


class ConversationStatus(StrEnum):
    BOT = "bot"
    PENDING = "pending"
    OPEN = "open"
    RESOLVED = "resolved"
    SNOOZED = "snoozed"


class MessageDirection(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class SenderType(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class DeliveryStatus(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


class TicketPriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class TicketStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class TicketEventKind(StrEnum):
    CREATED = "created"
    ASSIGNED = "assigned"
    STATUS_CHANGED = "status_changed"
    PRIORITY_CHANGED = "priority_changed"
    NOTE_ADDED = "note_added"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    MERGED = "merged"


class AgentRole(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class LoyaltyTransactionKind(StrEnum):
    EARN = "earn"
    REDEEM = "redeem"
    EXPIRE = "expire"
    ADJUST = "adjust"


class RedemptionStatus(StrEnum):
    CONFIRMED = "confirmed"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class HandoffReason(StrEnum):
    CUSTOMER_ASKED = "customer_asked"
    NO_ANSWER = "no_answer"
    COMPLAINT = "complaint"
    AGENT_INITIATED = "agent_initiated"


class ArticleStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class ProposalStatus(StrEnum):
    """A proposed phrasing of a KB article (a customer's question), as a supervisor decided it."""

    PENDING = "pending"
    ACCEPTED = "accepted"  # added to the article's alternative questions
    REJECTED = "rejected"  # never proposed again for that article


class ProposalSource(StrEnum):
    """Where a proposed phrasing came from."""

    ASSIST = "assist"  # an agent answered the bot's miss with an article inserted through agent assist
    LINK = "link"  # an agent linked the customer's message to an article ("This question is answered by…")
    FEEDBACK = "feedback"  # the customer took the bot's "did you mean" article and said it helped


class SurveyKind(StrEnum):
    CSAT = "csat"
    NPS = "nps"


class SurveyQuestionKind(StrEnum):
    RATING = "rating"  # a number on the survey's scale, answered with buttons
    CHOICE = "choice"  # one of the question's options, answered with buttons
    TEXT = "text"  # free text, typed in the chat (optional questions can be skipped)


class InvitationStatus(StrEnum):
    SENT = "sent"  # delivered (or queued for delivery), nothing answered yet
    PARTIAL = "partial"  # some questions answered
    COMPLETED = "completed"  # every question answered or skipped
    EXPIRED = "expired"


class EnrollmentStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class DuplicateReason(StrEnum):
    """Why the duplicate finder put customers together."""

    PHONE = "phone"  # the same phone number (E.164)
    EMAIL = "email"  # the same e-mail address (lower-cased)
    NAME = "name"  # the same name (case, accents, spacing, word order aside), same language, no contact that differs


class MatchStrength(StrEnum):
    EXACT = "exact"  # the shared e-mails and phones alone tie the whole group together
    NAME = "name"  # someone in the group is there by name only: look before merging


class CampaignKind(StrEnum):
    NPS = "nps"  # the NPS survey, asked in the chat
    CSAT = "csat"  # a CSAT survey
    COURSE = "course"  # an invitation to a course: a message with its start button
    MESSAGE = "message"  # a message, with variables such as {customer.first_name}


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class RecipientStatus(StrEnum):
    QUEUED = "queued"  # the survey invitation or message is recorded and announced for delivery
    NO_CHAT = "no_chat"  # no Telegram or web chat on the campaign's channels
    OPTED_OUT = "opted_out"  # withdrew consent between the count and the send


class Granularity(StrEnum):
    """The periods a report's series is cut into (UTC)."""

    DAY = "day"
    WEEK = "week"  # ISO week, Monday to Sunday
    MONTH = "month"


class AuditAction(StrEnum):
    """What the audit log records (its `action` column)."""

    LOGIN = "login"
    LOGIN_FAILED = "login.failed"
    LOGOUT = "logout"
    CUSTOMER_VIEWED = "customer.viewed"
    CUSTOMER_EXPORTED = "customer.exported"
    CUSTOMER_ERASED = "customer.erased"
    ERASURE_REQUESTED = "customer.erasure_requested"
    DATA_SHOWN = "customer.data_shown"  # the customer asked the bot what is stored about them (/privacy)
    POINTS_ADJUSTED = "points.adjusted"
    AGENT_CREATED = "agent.created"
    AGENT_CHANGED = "agent.changed"  # role, team, name, active
    PASSWORD_RESET = "agent.password_reset"
    SETTING_CHANGED = "setting.changed"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    PHRASING_ACCEPTED = "kb.phrasing_accepted"  # a proposed phrasing added to an article (services/phrasings.py)
    PHRASING_REJECTED = "kb.phrasing_rejected"
    GLOSSARY_TERM_ADDED = "glossary.added"  # a knowledge-base glossary term (crm_store/services/glossary.py)
    GLOSSARY_TERM_CHANGED = "glossary.changed"
    GLOSSARY_TERM_DELETED = "glossary.deleted"
    GLOSSARY_IMPORTED = "glossary.imported"


class Actor(StrEnum):
    AGENT = "agent"
    API = "api"  # an API token
    CUSTOMER = "customer"
    SYSTEM = "system"  # a command line, a timer


class PrivacyRequestStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"  # the customer was erased
    DECLINED = "declined"
