"""Views returned by the services: frozen, detached from the ORM, safe to hand to templates and handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from crm_store import models as m
from crm_store.enums import DuplicateReason, MatchStrength


@dataclass(frozen=True)
class CustomerView:
    id: int
    name: str
    email: str | None
    phone: str | None
    language: str
    tags: tuple[str, ...]
    marketing_consent: bool
    marketing_consent_at: datetime | None
    external_ref: str | None
    merged_into_id: int | None
    created_at: datetime
    erased_at: datetime | None = None  # personal data erased: the record is a husk kept for the figures

    @classmethod
    def of(cls, c: m.Customer) -> CustomerView:
        return cls(
            id=c.id,
            name=c.name,
            email=c.email,
            phone=c.phone,
            language=c.language,
            tags=tuple(c.tags or ()),
            marketing_consent=c.marketing_consent,
            marketing_consent_at=c.marketing_consent_at,
            external_ref=c.external_ref,
            merged_into_id=c.merged_into_id,
            created_at=c.created_at,
            erased_at=c.erased_at,
        )


@dataclass(frozen=True)
class IdentityView:
    id: int
    customer_id: int
    channel: str
    external_id: str
    display_name: str
    linked_at: datetime | None

    @classmethod
    def of(cls, i: m.ChannelIdentity) -> IdentityView:
        return cls(i.id, i.customer_id, str(i.channel), i.external_id, i.display_name, i.linked_at)


@dataclass(frozen=True)
class CustomerPage:
    """One page of a customer search, newest first; `next_before` is the cursor of the next page (None: last)."""

    customers: tuple[CustomerView, ...]
    next_before: int | None


@dataclass(frozen=True)
class CustomerFacts:
    """A customer with what a merge would move, counted: for comparing records side by side."""

    customer: CustomerView
    channels: tuple[str, ...]  # one per chat identity, e.g. ("telegram", "webchat")
    conversations: int
    tickets: int
    orders: int
    points: int  # loyalty balance
    tier: str | None
    surveys: int  # survey invitations
    courses: int  # enrollments
    last_contact_at: datetime | None  # the latest message in any of the customer's conversations


@dataclass(frozen=True)
class DuplicateMatch:
    """One reason customers were put together: the value they share (normalized) and who shares it."""

    reason: DuplicateReason
    value: str  # the E.164 phone, the lower-cased e-mail, or the name key ("anna muller")
    customer_ids: tuple[int, ...]


@dataclass(frozen=True)
class DuplicateGroup:
    """Active customers that look like one person; `customers` in id order."""

    strength: MatchStrength
    matches: tuple[DuplicateMatch, ...]
    customers: tuple[CustomerFacts, ...]

    @property
    def key(self) -> int:
        """The group's place in the list (its lowest customer id), the cursor of the next page."""
        return self.customers[0].customer.id


@dataclass(frozen=True)
class DuplicatePage:
    groups: tuple[DuplicateGroup, ...]
    next_after: int | None  # pass as `after` for the next page; None: this is the last


@dataclass(frozen=True)
class MergePreview:
    """What merging `sources` into `target` would do: everything counted in their facts moves to the target,
    and the target takes the profile fields (name, email, phone) it lacks from the first source that has them."""

    target: CustomerFacts
    sources: tuple[CustomerFacts, ...]
    fills: dict[str, str]


@dataclass(frozen=True)
class IdentifiedCustomer:
    customer: CustomerView
    identity: IdentityView
    created: bool


@dataclass(frozen=True)
class ConversationView:
    id: int
    customer_id: int
    identity_id: int | None
    status: str
    assignee_id: int | None
    team_id: int | None
    priority: str
    waiting_since: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, c: m.Conversation) -> ConversationView:
        return cls(
            id=c.id,
            customer_id=c.customer_id,
            identity_id=c.identity_id,
            status=str(c.status),
            assignee_id=c.assignee_id,
            team_id=c.team_id,
            priority=str(c.priority),
            waiting_since=c.waiting_since,
            first_response_at=c.first_response_at,
            resolved_at=c.resolved_at,
            created_at=c.created_at,
        )


@dataclass(frozen=True)
class MessageView:
    id: int
    conversation_id: int
    direction: str
    sender: str
    agent_id: int | None
    text: str
    payload: dict[str, Any]
    is_private: bool
    intent: str | None
    confidence: float | None
    kb_article_id: int | None
    delivery_status: str
    channel_message_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, x: m.Message) -> MessageView:
        return cls(
            id=x.id,
            conversation_id=x.conversation_id,
            direction=str(x.direction),
            sender=str(x.sender),
            agent_id=x.agent_id,
            text=x.text,
            payload=dict(x.payload or {}),
            is_private=x.is_private,
            intent=x.intent,
            confidence=x.confidence,
            kb_article_id=x.kb_article_id,
            delivery_status=str(x.delivery_status),
            channel_message_id=x.channel_message_id,
            created_at=x.created_at,
        )


@dataclass(frozen=True)
class RecordedMessage:
    message: MessageView
    conversation: ConversationView
    customer_id: int
    duplicate: bool  # True when this update had been stored before (a redelivery)


@dataclass(frozen=True)
class TicketView:
    id: int
    conversation_id: int
    customer_id: int
    subject: str
    category: str | None
    priority: str
    status: str
    assignee_id: int | None
    team_id: int | None
    sla_due_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    created_at: datetime
    context: dict[str, Any] = field(default_factory=dict)  # what the bot tried before the handoff

    @classmethod
    def of(cls, t: m.Ticket) -> TicketView:
        return cls(
            id=t.id,
            conversation_id=t.conversation_id,
            customer_id=t.customer_id,
            subject=t.subject,
            category=t.category,
            priority=str(t.priority),
            status=str(t.status),
            assignee_id=t.assignee_id,
            team_id=t.team_id,
            sla_due_at=t.sla_due_at,
            first_response_at=t.first_response_at,
            resolved_at=t.resolved_at,
            created_at=t.created_at,
            context=dict(t.context or {}),
        )


@dataclass(frozen=True)
class TicketEventView:
    id: int
    ticket_id: int
    kind: str
    agent_id: int | None
    actor: str
    from_value: str | None
    to_value: str | None
    note: str
    created_at: datetime

    @classmethod
    def of(cls, e: m.TicketEvent) -> TicketEventView:
        return cls(e.id, e.ticket_id, str(e.kind), e.agent_id, e.actor, e.from_value, e.to_value, e.note,
                   e.created_at)


@dataclass(frozen=True)
class AgentView:
    id: int
    email: str
    name: str
    role: str
    active: bool
    team_id: int | None

    @classmethod
    def of(cls, a: m.Agent) -> AgentView:
        return cls(a.id, a.email, a.name, str(a.role), a.active, a.team_id)


@dataclass(frozen=True)
class TierView:
    id: int
    name: str
    threshold: int
    benefits: tuple[str, ...]
    names: dict[str, str]

    @classmethod
    def of(cls, t: m.LoyaltyTier) -> TierView:
        return cls(t.id, t.name, t.threshold, tuple(t.benefits or ()), dict(t.names or {}))


@dataclass(frozen=True)
class LoyaltyTransactionView:
    id: int
    kind: str
    points: int
    reason: str
    order_ref: str | None
    agent_id: int | None
    created_at: datetime

    @classmethod
    def of(cls, t: m.LoyaltyTransaction) -> LoyaltyTransactionView:
        return cls(t.id, str(t.kind), t.points, t.reason, t.order_ref, t.agent_id, t.created_at)


@dataclass(frozen=True)
class LoyaltySummary:
    customer_id: int
    account_id: int | None
    balance: int
    lifetime_points: int
    tier: TierView | None
    next_tier: TierView | None
    points_to_next_tier: int | None
    recent: tuple[LoyaltyTransactionView, ...] = ()


@dataclass(frozen=True)
class RewardView:
    id: int
    name: str
    names: dict[str, str]
    description: str
    cost: int
    stock: int | None
    active: bool
    min_tier_id: int | None

    @classmethod
    def of(cls, r: m.Reward) -> RewardView:
        return cls(r.id, r.name, dict(r.names or {}), r.description, r.cost, r.stock, r.active, r.min_tier_id)


@dataclass(frozen=True)
class RedemptionView:
    id: int
    reward_id: int
    points: int
    status: str
    balance_after: int
    created_at: datetime
    duplicate: bool = False


@dataclass(frozen=True)
class OrderView:
    id: int
    customer_id: int
    external_ref: str
    amount: Decimal
    currency: str
    placed_at: datetime
    status: str
    items: tuple[Any, ...]
    points_awarded: int

    @classmethod
    def of(cls, o: m.Order) -> OrderView:
        return cls(o.id, o.customer_id, o.external_ref, o.amount, o.currency, o.placed_at, str(o.status),
                   tuple(o.items or ()), o.points_awarded)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # message | ticket_event | points | order | identity | survey_response | lesson ...
    summary: str
    ref_id: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrdersSummary:
    count: int
    totals: dict[str, Decimal]  # by currency
    last_order_at: datetime | None
    recent: tuple[OrderView, ...]


@dataclass(frozen=True)
class Customer360:
    customer: CustomerView
    identities: tuple[IdentityView, ...]
    loyalty: LoyaltySummary
    orders: OrdersSummary
    tickets: tuple[TicketView, ...]
    conversations: tuple[ConversationView, ...]
    timeline: tuple[TimelineEntry, ...]


@dataclass(frozen=True)
class ArticleView:
    """A stored knowledge-base article (satisfies knowledge_base.records.IndexableArticle)."""

    id: int
    external_id: str | None
    language: str
    question: str
    alt_questions: tuple[str, ...]
    answer: str
    tags: tuple[str, ...]
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None

    @classmethod
    def of(cls, a: m.KbArticle) -> ArticleView:
        return cls(
            id=a.id,
            external_id=a.external_id,
            language=a.language,
            question=a.question,
            alt_questions=tuple(a.alt_questions or ()),
            answer=a.answer,
            tags=tuple(a.tags or ()),
            status=str(a.status),
            version=a.version,
            created_at=a.created_at,
            updated_at=a.updated_at,
            published_at=a.published_at,
        )


@dataclass(frozen=True)
class ArticleInput:
    """One article to import (the fields of knowledge_base.records.ArticleDraft); language None: guessed."""

    question: str
    answer: str
    alt_questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    language: str | None = None
    external_id: str | None = None
    status: str = "published"


@dataclass(frozen=True)
class UpsertReport:
    created: int
    updated: int
    unchanged: int
    revision: int  # the knowledge base's revision after the import


@dataclass(frozen=True)
class ArticleVectors:
    """The cached embeddings of one article version: `count` rows of `dim` float32 (little-endian, row-major)."""

    article_id: int
    version: int
    model: str
    vectors: bytes
    dim: int
    count: int

    @classmethod
    def of(cls, v: m.KbArticleVector) -> ArticleVectors:
        return cls(v.article_id, v.version, v.model, bytes(v.vectors), v.dim, v.count)


@dataclass(frozen=True)
class GlossaryTermView:
    """A glossary term and its synonyms (has the attributes of knowledge_base.records.GlossaryTerm)."""

    id: int
    language: str
    term: str
    synonyms: tuple[str, ...]
    updated_at: datetime
    updated_by_agent_id: int | None

    @classmethod
    def of(cls, t: m.KbGlossaryTerm) -> GlossaryTermView:
        return cls(t.id, t.language, t.term, tuple(t.synonyms or ()), t.updated_at, t.updated_by_agent_id)


# --- link tokens -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkTokenCreated:
    """A new one-time link code; `token` is its only plaintext copy (the store keeps a hash): show it once."""

    id: int
    token: str
    customer_id: int
    created_by_agent_id: int | None
    expires_at: datetime

    @property
    def start_parameter(self) -> str:
        """Telegram's deep-link parameter: t.me/<bot>?start=<this>, which the bot receives as `/start <this>`."""
        return f"link_{self.token}"

    @property
    def chat_command(self) -> str:
        """What a customer types in any chat (the web chat has no deep links)."""
        return f"/link {self.token}"


@dataclass(frozen=True)
class LinkTokenRedeemed:
    customer: CustomerView  # the CRM customer the chat now belongs to
    identity: IdentityView
    repeated: bool = False  # this chat had already redeemed this code (a second tap of the same link)


# --- surveys -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurveyView:
    id: int
    key: str
    kind: str
    title: str
    questions: tuple[dict[str, Any], ...]
    active: bool
    expires_after_hours: int

    @classmethod
    def of(cls, s: m.Survey) -> SurveyView:
        return cls(s.id, s.key, str(s.kind), s.title, tuple(s.questions), s.active, s.expires_after_hours)


@dataclass(frozen=True)
class InvitationView:
    id: int
    survey_id: int
    customer_id: int
    conversation_id: int | None
    ticket_id: int | None
    agent_id: int | None
    campaign: str | None
    channel: str | None
    external_id: str | None
    language: str
    status: str
    score: int | None
    sent_at: datetime
    expires_at: datetime | None
    answered_at: datetime | None
    completed_at: datetime | None
    duplicate: bool = False  # invite(): it had been sent before; nothing was sent again

    @classmethod
    def of(cls, i: m.SurveyInvitation, *, duplicate: bool = False) -> InvitationView:
        return cls(
            id=i.id, survey_id=i.survey_id, customer_id=i.customer_id, conversation_id=i.conversation_id,
            ticket_id=i.ticket_id, agent_id=i.agent_id, campaign=i.campaign,
            channel=str(i.channel) if i.channel else None, external_id=i.external_id, language=i.language,
            status=str(i.status), score=i.score, sent_at=i.sent_at, expires_at=i.expires_at,
            answered_at=i.answered_at, completed_at=i.completed_at, duplicate=duplicate,
        )


@dataclass(frozen=True)
class CustomerSurvey:
    """A survey a customer was sent, with the answers given: (question prompt, value; None when skipped)."""

    invitation: InvitationView
    title: str
    kind: str
    answers: tuple[tuple[str, int | str | None], ...]


@dataclass(frozen=True)
class ScoreRow:
    """Aggregated answers of one group (an agent, a team, a week, or all): CSAT as the mean rating and the share of
    4s and 5s; NPS as % promoters (9–10) minus % detractors (0–6)."""

    label: str
    sent: int
    answered: int  # invitations with a score
    mean: float | None
    score: float | None  # CSAT: % satisfied; NPS: the net score
    satisfied: int = 0  # CSAT: ratings of 4 or 5
    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    @property
    def response_rate(self) -> float:
        return self.answered / self.sent if self.sent else 0.0

    @classmethod
    def of(cls, kind: str, label: str, *, sent: int, answered: int, total: int, satisfied: int, promoters: int,
           detractors: int) -> ScoreRow:
        """From the SQL aggregates: counts and the sum of scores."""
        n = answered
        mean = total / n if n else None
        if kind == "nps":
            return cls(label, sent, n, mean, 100.0 * (promoters - detractors) / n if n else None, 0, promoters,
                       n - promoters - detractors, detractors)
        return cls(label, sent, n, mean, 100.0 * satisfied / n if n else None, satisfied)


@dataclass(frozen=True)
class SurveySummary:
    """A survey in the console's list, with its totals."""

    survey: SurveyView
    totals: ScoreRow


@dataclass(frozen=True)
class SurveyReport:
    """A survey's results within the filters: totals, then by agent, team and ISO week (oldest first)."""

    survey: SurveyView
    totals: ScoreRow
    by_agent: tuple[ScoreRow, ...]
    by_team: tuple[ScoreRow, ...]
    by_week: tuple[ScoreRow, ...]
    campaigns: tuple[str, ...]  # every campaign the survey was sent in, for the filter


@dataclass(frozen=True)
class SurveyComment:
    invitation_id: int
    at: datetime
    text: str
    score: int | None
    customer_id: int
    customer_name: str
    agent_name: str | None
    campaign: str | None


@dataclass(frozen=True)
class CommentPage:
    comments: tuple[SurveyComment, ...]
    total: int


# --- courses -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuizQuestionView:
    id: int
    lesson_id: int
    position: int
    prompt: str
    options: tuple[str, ...]
    correct_option: int  # index into options
    explanation: str

    @classmethod
    def of(cls, q: m.QuizQuestion) -> QuizQuestionView:
        return cls(q.id, q.lesson_id, q.position, q.prompt, tuple(q.options or ()), q.correct_option, q.explanation)


@dataclass(frozen=True)
class LessonView:
    id: int
    course_id: int
    position: int  # 1, 2, ...: the order lessons are delivered in
    title: str
    body: str  # Markdown
    image_url: str | None
    link_url: str | None
    quiz: tuple[QuizQuestionView, ...] = ()

    @classmethod
    def of(cls, lesson: m.Lesson, quiz: tuple[QuizQuestionView, ...] = ()) -> LessonView:
        return cls(lesson.id, lesson.course_id, lesson.position, lesson.title, lesson.body, lesson.image_url,
                   lesson.link_url, quiz)


@dataclass(frozen=True)
class CourseView:
    id: int
    key: str
    language: str
    title: str
    description: str
    published: bool
    lesson_count: int
    lessons: tuple[LessonView, ...] = ()  # filled by get_course, empty in the catalogue


@dataclass(frozen=True)
class EnrollmentView:
    """A customer's place in a course, with their progress."""

    id: int
    course_id: int
    customer_id: int
    course_key: str
    course_title: str
    course_language: str
    status: str  # in_progress | completed
    current_position: int  # the lesson being studied (lessons_total + 1 once completed)
    lessons_done: int
    lessons_total: int
    quiz_answered: int
    quiz_correct: int
    quiz_total: int
    started_at: datetime
    last_activity_at: datetime
    completed_at: datetime | None
    created: bool = False  # True when this call enrolled the customer

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class CourseStep:
    """Where a customer stands: the lesson being studied and its first unanswered quiz question."""

    enrollment: EnrollmentView
    lesson: LessonView | None  # None once the course is completed
    question: QuizQuestionView | None  # None when the lesson's quiz is done (or it has none)


@dataclass(frozen=True)
class QuizResult:
    enrollment_id: int
    question_id: int
    chosen_option: int
    correct: bool
    correct_option: int
    correct_answer: str  # the text of the correct option
    explanation: str
    duplicate: bool  # the question had been answered before: that first answer stands


@dataclass(frozen=True)
class LessonResult:
    step: CourseStep  # what comes next
    duplicate: bool  # the lesson had been completed before: nothing changed
    course_completed: bool  # this call completed the course


@dataclass(frozen=True)
class CourseSummary:
    """A course in the console's list: its completion report."""

    course: CourseView
    enrolled: int
    completed: int
    quiz_answers: int
    quiz_correct: int
    furthest_position: int = 0  # the furthest lesson a learner has reached: lessons up to it can no longer move

    @property
    def average_score(self) -> float | None:
        """The share of quiz answers that were right, in percent (None before any answer)."""
        return 100.0 * self.quiz_correct / self.quiz_answers if self.quiz_answers else None

    @property
    def completion_rate(self) -> float:
        return self.completed / self.enrolled if self.enrolled else 0.0


# --- console: sessions, API tokens, agents and teams --------------------------------------------------------------


@dataclass(frozen=True)
class StartedSession:
    """A new console session; `token` (for the cookie) is shown this once: the store keeps only its hash."""

    token: str
    csrf_token: str
    expires_at: datetime
    agent: AgentView


@dataclass(frozen=True)
class AgentSessionView:
    """A live session and its (active) agent, as read on every console request."""

    id: int
    agent: AgentView
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ApiTokenView:
    id: int
    name: str
    prefix: str  # the first characters of the token, to recognise it in a list
    scopes: tuple[str, ...]
    created_by_agent_id: int | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: m.ApiToken) -> ApiTokenView:
        return cls(t.id, t.name, t.prefix, tuple(t.scopes or ()), t.created_by_agent_id, t.created_at,
                   t.last_used_at, t.expires_at, t.revoked_at)

    def active_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class CreatedApiToken:
    """A new API token: `token` is the plaintext, shown once."""

    token: str
    view: ApiTokenView


@dataclass(frozen=True)
class TeamView:
    id: int
    name: str
    description: str
    members: int  # active agents in the team


@dataclass(frozen=True)
class AppSettingView:
    key: str
    value: Any
    updated_at: datetime
    updated_by_agent_id: int | None

    @classmethod
    def of(cls, s: m.AppSetting) -> AppSettingView:
        return cls(s.key, s.value, s.updated_at, s.updated_by_agent_id)


# --- console: inbox, SLA, assignment, canned responses ------------------------------------------------------------


@dataclass(frozen=True)
class SlaPolicyView:
    id: int
    priority: str
    tier_id: int | None  # None: every tier without a row of its own
    first_response_minutes: int
    resolution_minutes: int

    @classmethod
    def of(cls, p: m.SlaPolicy) -> SlaPolicyView:
        return cls(p.id, str(p.priority), p.tier_id, p.first_response_minutes, p.resolution_minutes)


@dataclass(frozen=True)
class SlaTargets:
    first_response_minutes: int
    resolution_minutes: int


@dataclass(frozen=True)
class InboxFilter:
    """One inbox view; an empty tuple or None means "any"."""

    statuses: tuple[str, ...] = ("new", "open", "pending")
    priorities: tuple[str, ...] = ()
    assignee: str | int = "anyone"  # "me" (the viewer), "unassigned", "anyone", or an agent's id
    team_id: int | None = None
    channel: str | None = None
    overdue: bool = False  # only tickets whose next SLA deadline has passed


@dataclass(frozen=True)
class InboxRow:
    ticket_id: int
    conversation_id: int
    subject: str
    status: str
    priority: str
    customer_id: int
    customer_name: str
    channel: str | None
    assignee_id: int | None
    assignee_name: str | None
    team_id: int | None
    team_name: str | None
    sla_due_at: datetime | None
    overdue: bool
    last_message: str | None  # the start of the last message the customer saw or wrote (no agent notes)
    last_message_at: datetime | None
    waiting_since: datetime | None  # the customer's oldest unanswered message
    created_at: datetime


@dataclass(frozen=True)
class InboxPage:
    rows: tuple[InboxRow, ...]
    next_cursor: str | None  # pass it back as `cursor` for the next page; None on the last page


@dataclass(frozen=True)
class InboxCounts:
    mine: int
    unassigned: int
    all_open: int  # every ticket in the counted statuses (new, open, pending unless asked otherwise)
    overdue: int
    by_status: dict[str, int]


@dataclass(frozen=True)
class CustomerSummary:
    id: int
    name: str
    email: str | None
    phone: str | None
    language: str
    tags: tuple[str, ...]
    tier_name: str | None
    points_balance: int
    channel: str | None  # the conversation's chat
    display_name: str  # the name the chat shows (Telegram's first name, ...)


@dataclass(frozen=True)
class TicketSla:
    channel: str | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    sla_due_at: datetime | None
    overdue: bool


@dataclass(frozen=True)
class ConversationPage:
    conversation: ConversationView
    ticket: TicketView | None  # the active ticket, else the latest one, if any
    sla: TicketSla | None
    customer: CustomerSummary
    messages: tuple[MessageView, ...]  # oldest first
    agent_names: dict[int, str]  # of the agents who wrote these messages
    next_before_id: int | None  # pass it as `before_id` for older messages; None when there are none


@dataclass(frozen=True)
class CannedResponseView:
    id: int
    shortcut: str
    title: str
    body: str
    language: str
    team_id: int | None
    created_by_agent_id: int | None
    updated_at: datetime

    @classmethod
    def of(cls, c: m.CannedResponse) -> CannedResponseView:
        return cls(c.id, c.shortcut, c.title, c.body, c.language, c.team_id, c.created_by_agent_id, c.updated_at)


# --- reports (the console's dashboard; crm_store/services/reports.py) ---------------------------------------------
# Every KPI's definition is in ReportService's docstrings; counts are exact, rates are ratios of those counts.


@dataclass(frozen=True)
class DayVolume:
    """One UTC day's conversations (by creation day): all, engaged (with a customer message), and those of the
    engaged that were handed off (a ticket) or contained (none)."""

    day: date
    conversations: int
    engaged: int
    handed_off: int

    @property
    def contained(self) -> int:
        return self.engaged - self.handed_off


@dataclass(frozen=True)
class DurationStats:
    """Durations in seconds over `n` tickets: the median and the 90th percentile (linear interpolation, as
    PostgreSQL's percentile_cont), rounded to the millisecond; None when n is 0."""

    n: int
    median_seconds: float | None
    p90_seconds: float | None

    @property
    def median_minutes(self) -> float | None:
        return None if self.median_seconds is None else self.median_seconds / 60

    @property
    def p90_minutes(self) -> float | None:
        return None if self.p90_seconds is None else self.p90_seconds / 60


@dataclass(frozen=True)
class CsatSummary:
    """CSAT answers (1-5) by score; satisfied = scores 4 and 5."""

    by_score: dict[int, int]

    @property
    def n(self) -> int:
        return sum(self.by_score.values())

    @property
    def mean(self) -> float | None:
        return sum(s * c for s, c in self.by_score.items()) / self.n if self.n else None

    @property
    def satisfied(self) -> int:
        return sum(c for s, c in self.by_score.items() if s >= 4)

    @property
    def satisfied_pct(self) -> float | None:
        return 100 * self.satisfied / self.n if self.n else None


@dataclass(frozen=True)
class NpsSummary:
    """NPS answers (0-10) by score: promoters 9-10, passives 7-8, detractors 0-6; score = % promoters - %
    detractors (-100 to 100)."""

    by_score: dict[int, int]

    @property
    def n(self) -> int:
        return sum(self.by_score.values())

    @property
    def promoters(self) -> int:
        return sum(c for s, c in self.by_score.items() if s >= 9)

    @property
    def passives(self) -> int:
        return sum(c for s, c in self.by_score.items() if 7 <= s <= 8)

    @property
    def detractors(self) -> int:
        return sum(c for s, c in self.by_score.items() if s <= 6)

    @property
    def score(self) -> float | None:
        return 100 * (self.promoters - self.detractors) / self.n if self.n else None


@dataclass(frozen=True)
class IntentCount:
    intent: str
    count: int


@dataclass(frozen=True)
class UnansweredQuestion:
    """Customer questions the bot could not answer, grouped by normalised text (case, spaces, end punctuation)."""

    text: str  # the latest phrasing asked
    count: int
    last_asked_at: datetime


@dataclass(frozen=True)
class AskedQuestion:
    """One customer question the bot could not answer (the KB gaps page clusters these); its language is not
    stored: the knowledge base detects it from the text."""

    message_id: int
    conversation_id: int
    customer_id: int
    text: str
    asked_at: datetime


class Containment:
    """Engaged conversations (a customer message), those handed off (a ticket) and the rest, contained by the bot."""

    engaged: int
    handed_off: int

    @property
    def contained(self) -> int:
        return self.engaged - self.handed_off

    @property
    def containment_pct(self) -> float | None:
        return 100 * self.contained / self.engaged if self.engaged else None

    @property
    def handoff_pct(self) -> float | None:
        return 100 * self.handed_off / self.engaged if self.engaged else None


@dataclass(frozen=True)
class DashboardReport(Containment):
    start: date  # first UTC day, inclusive
    end: date  # last UTC day, inclusive
    channel: str | None
    days: tuple[DayVolume, ...]  # every day of the range, oldest first, zeros included
    first_response: DurationStats
    resolution: DurationStats
    csat: CsatSummary
    nps: NpsSummary
    top_intents: tuple[IntentCount, ...]
    bot_replies_with_intent: int  # the denominator of the intents' shares
    unanswered: tuple[UnansweredQuestion, ...]

    @property
    def conversations(self) -> int:
        return sum(d.conversations for d in self.days)

    @property
    def engaged(self) -> int:
        return sum(d.engaged for d in self.days)

    @property
    def handed_off(self) -> int:
        return sum(d.handed_off for d in self.days)


# --- KPI reports (the console's Reports section; crm_store/services/kpis.py) ---------------------------------------

R = TypeVar("R")


@dataclass(frozen=True)
class Period:
    """One bucket of a series: UTC days start..end (inclusive, clipped to the report's range), or the whole range."""

    start: date
    end: date
    label: str  # "2024-03-01" (day), "2024-W09" (ISO week), "2024-03" (month), "Total"


@dataclass(frozen=True)
class SatisfactionRow:
    period: Period
    csat: CsatSummary
    nps: NpsSummary


@dataclass(frozen=True)
class VolumeRow(Containment):
    """Conversations started in the period: all, engaged (a customer message), and of those handed off (a ticket)."""

    period: Period
    conversations: int
    engaged: int
    handed_off: int


@dataclass(frozen=True)
class ResponseTimeRow:
    period: Period
    first_response: DurationStats
    resolution: DurationStats


@dataclass(frozen=True)
class RetentionRow:
    """Customers with a counted order in the period, their counted orders, those of them with two or more, and those
    who ordered again in the next period (None: the next period starts after the range)."""

    period: Period
    customers: int
    orders: int
    repeat_customers: int
    retained: int | None

    @property
    def repeat_pct(self) -> float | None:
        return 100 * self.repeat_customers / self.customers if self.customers else None

    @property
    def retention_pct(self) -> float | None:
        return 100 * self.retained / self.customers if self.customers and self.retained is not None else None


@dataclass(frozen=True)
class KpiSeries(Generic[R]):
    """A report over UTC days start..end: one row per period (every period of the range, zeros included) and the
    whole range's row."""

    start: date
    end: date
    granularity: str
    rows: tuple[R, ...]
    total: R


@dataclass(frozen=True)
class TicketCount:
    name: str  # a category or a team
    opened: int
    resolved: int
    open_now: int


@dataclass(frozen=True)
class TicketsReport:
    start: date
    end: date
    by_category: tuple[TicketCount, ...]
    by_team: tuple[TicketCount, ...]
    total: TicketCount


@dataclass(frozen=True)
class AgentPerformance:
    agent_id: int
    name: str
    active: bool
    resolved: int
    first_response_median_seconds: float | None
    resolution_median_seconds: float | None
    csat: CsatSummary
    replies: int


@dataclass(frozen=True)
class IntentRow:
    intent: str
    replies: int  # bot replies with this intent
    share_pct: float  # of every bot reply with an intent
    conversations: int  # conversations with such a reply
    contained: int  # of those, without a ticket

    @property
    def containment_pct(self) -> float | None:
        return 100 * self.contained / self.conversations if self.conversations else None


@dataclass(frozen=True)
class WeekFigures:
    """One ISO week's headline numbers."""

    volume: VolumeRow
    times: ResponseTimeRow
    satisfaction: SatisfactionRow
    orders: RetentionRow
    tickets: TicketCount  # opened, resolved in the week, open now


@dataclass(frozen=True)
class WeeklySummary:
    week: str  # "2024-W09"
    start: date  # its Monday
    end: date  # its Sunday
    current: WeekFigures
    previous: WeekFigures
    top_intents: tuple[IntentRow, ...]
    teams: tuple[TicketCount, ...]


# --- end of reports -----------------------------------------------------------------------------------------------


# --- segments ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentView:
    id: int
    name: str
    description: str
    rules: dict[str, Any]  # the rule tree as stored (crm_store/segments.py)
    created_by_agent_id: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: m.Segment) -> SegmentView:
        return cls(s.id, s.name, s.description, s.rules, s.created_by_agent_id, s.created_at, s.updated_at)


@dataclass(frozen=True)
class SegmentPreview:
    """How many customers the rules select now, and a few of them (the newest first)."""

    count: int
    sample: tuple[CustomerView, ...]


@dataclass(frozen=True)
class SegmentMembers:
    """One page of member ids, ascending; `next_after_id` is the cursor of the next page (None: the last page)."""

    ids: tuple[int, ...]
    next_after_id: int | None


@dataclass(frozen=True)
class CampaignView:
    id: int
    key: str
    name: str
    kind: str
    status: str
    segment_id: int | None
    rules: dict[str, Any]
    survey_id: int | None
    course_id: int | None
    message: dict[str, Any]
    channels: tuple[str, ...]
    quiet_start: int | None
    quiet_end: int | None
    timezone: str
    per_second: int
    cursor: int
    created_by_agent_id: int | None
    created_at: datetime
    launched_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, c: m.Campaign) -> CampaignView:
        return cls(c.id, c.key, c.name, str(c.kind), str(c.status), c.segment_id, c.rules, c.survey_id, c.course_id,
                   c.message, tuple(c.channels), c.quiet_start, c.quiet_end, c.timezone, c.per_second, c.cursor,
                   c.created_by_agent_id, c.created_at, c.launched_at, c.finished_at)


@dataclass(frozen=True)
class CampaignProgress:
    """Where a campaign stands: recipients by outcome, deliveries by status, answers (surveys)."""

    campaign: CampaignView
    recipients: int  # customers handled so far
    queued: int  # sent the survey or the message (announced for delivery)
    no_chat: int
    opted_out: int
    sent: int  # accepted by the channel (Telegram; a web chat message once stored)
    failed: int  # refused by the channel (a blocked bot, a deleted chat)
    answered: int  # surveys: invitations with an answer

    @property
    def response_rate(self) -> float:
        return self.answered / self.queued if self.queued else 0.0


# --- privacy and audit ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntryView:
    id: int
    at: datetime
    actor: str
    agent_id: int | None
    actor_label: str
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any]
    ip: str

    @classmethod
    def of(cls, e: m.AuditEntry) -> AuditEntryView:
        return cls(id=e.id, at=e.at, actor=str(e.actor), agent_id=e.agent_id, actor_label=e.actor_label,
                   action=e.action, subject_type=e.subject_type, subject_id=e.subject_id,
                   details=dict(e.details or {}), ip=e.ip)


@dataclass(frozen=True)
class AuditPage:
    entries: tuple[AuditEntryView, ...]
    next_before: int | None  # pass as `before` for older entries; None: this is the last page


@dataclass(frozen=True)
class PrivacySummary:
    """What Kefu stores about a customer, as the customer is shown it in the chat (/privacy)."""

    customer_id: int
    name: str
    email: str | None
    phone: str | None
    language: str
    marketing_consent: bool
    channels: tuple[str, ...]
    counts: dict[str, int]  # conversations, messages, tickets, orders, survey_answers, courses
    points: int | None
    tier: str | None
    erasure_pending: bool


@dataclass(frozen=True)
class PrivacyRequestView:
    id: int
    customer_id: int
    customer_name: str
    channel: str | None
    status: str
    requested_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class ErasureReport:
    customer_ids: tuple[int, ...]  # the customer and every record merged into them
    rows: dict[str, int]  # table -> rows erased, anonymised or deleted
    audit_entry_id: int
