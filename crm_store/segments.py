"""Customer segments: the rule language and its compiler to one SQL query (SQLite and PostgreSQL). Pure: it builds
SQL and never runs it.

A rule is a condition or a group of rules, stored as JSON:

    {"all": [{"field": "tier", "op": "in", "value": ["Gold", "Platinum"]},
             {"any": [{"field": "channel", "op": "eq", "value": "telegram"},
                      {"not": {"field": "tags", "op": "has_any", "value": ["wholesale"]}}]},
             {"field": "last_order_date", "op": "within_days", "value": 90}]}

`all` of nothing matches everyone, `any` of nothing no one; groups nest at most 5 deep, with at most 50 conditions.
Every condition is true or false for every customer (never SQL NULL), so `not` is the exact complement. Merged
customers are never members. What the fields mean:

- points: the loyalty balance (0 without an account); tier: the tier's name (`not_in` matches customers without one).
- orders count when paid, shipped or completed; order_total adds their amounts whatever the currency.
- last_order_date, last_contact (the customer's latest inbound message): `within_days` n: one in the last n days;
  `not_within_days` n: some, but none in the last n days; `never`: none at all; `before` / `after` a date: the
  latest is before that day / after it. Days are UTC days; "now" is given to the compiler.
- rfm_*: among active customers with orders, ranked ascending by latest order date, order count and order total
  (ties share the lower rank): score = 1 + floor(5 * (rank - 1) / n), 1 to 5, 5 best. Customers without orders have
  no score and match no score condition.
- csat, nps: the score of the customer's latest answered survey of that kind; `answered` true/false: ever answered
  one. nps_group: promoter 9-10, passive 7-8, detractor 0-6 (of the latest NPS score).
- course: a course key or id; course_progress: the percent of the course's lessons done (100 once completed), the
  condition naming its course: {"field": "course_progress", "course": "tea-101", "op": "gte", "value": 50}.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator
from sqlalchemy import (
    CTE,
    ColumnElement,
    Exists,
    Select,
    and_,
    case,
    distinct,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased

from crm_store import models as m
from crm_store.coltypes import storable_text
from crm_store.enums import EnrollmentStatus, MessageDirection, OrderStatus
from crm_store.errors import InvalidSegment

MAX_DEPTH = 5
MAX_CONDITIONS = 50
MAX_GROUPS = 50
MAX_LIST = 100  # values of an `in` / `has_any` list
MAX_DAYS = 36500
MAX_NUMBER = 2**31 - 1  # compared with INTEGER columns (32 bits in PostgreSQL): a larger number cannot be bound
COUNTED_ORDERS = (OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.COMPLETED)
NPS_GROUPS = {"promoter": (9, 10), "passive": (7, 8), "detractor": (0, 6)}

NUMERIC = ("eq", "gt", "gte", "lt", "lte", "between")
WHEN = ("before", "after", "within_days", "not_within_days", "never")
LISTS = ("in", "not_in", "has_any", "has_all", "has_none")


@dataclass(frozen=True)
class _Spec:
    ops: tuple[str, ...]
    kind: Literal["text", "integer", "number", "tags", "bool", "when", "course"]
    choices: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None


FIELDS: dict[str, _Spec] = {
    "tier": _Spec(("eq", "in", "not_in"), "text"),
    "points": _Spec(NUMERIC, "integer"),
    "language": _Spec(("eq", "in"), "text"),
    "channel": _Spec(("eq", "in"), "text", choices=("telegram", "webchat")),
    "tags": _Spec(("has_any", "has_all", "has_none"), "tags"),
    "consent": _Spec(("is",), "bool"),
    "last_order_date": _Spec(WHEN, "when"),
    "order_count": _Spec(NUMERIC, "integer", low=0),
    "order_total": _Spec(NUMERIC, "number"),
    "rfm_recency": _Spec(NUMERIC, "integer", low=1, high=5),
    "rfm_frequency": _Spec(NUMERIC, "integer", low=1, high=5),
    "rfm_monetary": _Spec(NUMERIC, "integer", low=1, high=5),
    "last_contact": _Spec(WHEN, "when"),
    "csat": _Spec((*NUMERIC, "answered"), "integer", low=0, high=10),
    "nps": _Spec((*NUMERIC, "answered"), "integer", low=0, high=10),
    "nps_group": _Spec(("eq", "in"), "text", choices=tuple(NPS_GROUPS)),
    "course": _Spec(("enrolled", "completed", "not_enrolled"), "course"),
    "course_progress": _Spec(NUMERIC, "number", low=0, high=100),
}
CONDITION_KEYS = ("field", "op", "value", "course")


# --- the rule tree -------------------------------------------------------------------------------------------


class Condition(BaseModel):
    """{"field", "op", "value"} (and "course" for course_progress); the value is checked against the field."""

    model_config = ConfigDict(extra="forbid")

    field: str
    op: str
    value: Any = None
    course: str | int | None = None

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        name, op = raw.get("field"), raw.get("op")
        spec = FIELDS.get(name) if isinstance(name, str) else None
        if spec is None:
            raise ValueError(f"Unknown field {name!r}; the fields are {', '.join(FIELDS)}.")
        if op not in spec.ops:
            raise ValueError(f"{name}: no operator {op!r}; use {_either(spec.ops)}.")
        course = raw.get("course")
        if name == "course_progress":
            course = _course_ref('course_progress needs "course"', course)
        elif course is not None:
            raise ValueError(f"{name}: only course_progress names a course.")
        return {"field": name, "op": op, "value": _checked_value(name, spec, op, raw.get("value")), "course": course}


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: list[Rule]


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    any: list[Rule]


class NotOf(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    not_: Rule = Field(alias="not")


def _node_kind(raw: Any) -> str | None:
    if isinstance(raw, Mapping):
        return next((key for key in ("all", "any", "not") if key in raw), "condition")
    return {Condition: "condition", AllOf: "all", AnyOf: "any", NotOf: "not"}.get(type(raw))


Rule = Annotated[
    Annotated[Condition, Tag("condition")] | Annotated[AllOf, Tag("all")] | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(_node_kind),
]
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()
_RULE: TypeAdapter[Rule] = TypeAdapter(Rule)


def parse_rule(raw: Any) -> Rule:
    """The rule tree of a segment's JSON; InvalidSegment with what is wrong."""
    _check_shape(raw)
    try:
        return _RULE.validate_python(raw)
    except ValidationError as exc:
        raise InvalidSegment(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


def dump_rule(rule: Rule) -> dict[str, Any]:
    """The rule as stored: JSON types, dates as YYYY-MM-DD, no empty keys."""
    return _RULE.dump_python(rule, mode="json", by_alias=True, exclude_none=True)  # type: ignore[no-any-return]


def conditions(rule: Rule) -> Iterator[Condition]:
    """Every condition of the tree."""
    if isinstance(rule, Condition):
        yield rule
    elif isinstance(rule, NotOf):
        yield from conditions(rule.not_)
    else:
        for child in rule.all if isinstance(rule, AllOf) else rule.any:
            yield from conditions(child)


_SHAPE = ("A rule is a condition {\"field\", \"op\", \"value\"} or a group {\"all\": [...]}, {\"any\": [...]} or "
          "{\"not\": {...}}.")


def _check_shape(raw: Any) -> None:
    """Groups and conditions, nesting and size; iterative, so a hostile depth cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(raw, 0)]
    count = {"condition": 0, "group": 0}
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Mapping):
            raise InvalidSegment(_SHAPE)
        groups = [key for key in ("all", "any", "not") if key in node]
        if not groups:
            count["condition"] += 1
            if unknown := sorted(set(node) - set(CONDITION_KEYS), key=str):
                raise InvalidSegment(f"A condition has field, op and value; {', '.join(map(repr, unknown))} is not "
                                     "one of them.")
            if "field" not in node or "op" not in node:
                raise InvalidSegment("A condition needs a field and an op.")
        elif len(node) != 1:
            raise InvalidSegment(f"A group has one key (all, any or not); this one has {', '.join(map(str, node))}.")
        else:
            count["group"] += 1
            if depth + 1 > MAX_DEPTH:
                raise InvalidSegment(f"Groups nest at most {MAX_DEPTH} deep.")
            body = node[groups[0]]
            if groups[0] == "not":
                stack.append((body, depth + 1))
            elif isinstance(body, list):
                stack.extend((child, depth + 1) for child in body)
            else:
                raise InvalidSegment(f"\"{groups[0]}\" holds a list of rules.")
        if count["condition"] > MAX_CONDITIONS or count["group"] > MAX_GROUPS:
            raise InvalidSegment(f"A segment has at most {MAX_CONDITIONS} conditions and {MAX_GROUPS} groups.")


# --- values ----------------------------------------------------------------------------------------------------


def _either(options: tuple[str, ...]) -> str:
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


def _checked_value(name: str, spec: _Spec, op: str, value: Any) -> Any:
    """The value in the type the compiler needs; ValueError saying what the field and operator take."""
    where = f"{name} {op}"
    if op == "never":
        if value is not None:
            raise ValueError(f"{where}: takes no value.")
        return None
    if op in ("is", "answered"):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: true or false.")
        return value
    if op in ("before", "after"):
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: a date as YYYY-MM-DD.") from None
    if op in ("within_days", "not_within_days"):
        return _number(where, value, integer=True, low=1, high=MAX_DAYS, what="a whole number of days")
    if spec.kind == "course":
        return _course_ref(where, value)
    if op in LISTS:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise ValueError(f"{where}: a list of 1 to {MAX_LIST} {_names(spec)}.")
        return list(dict.fromkeys(_text(where, item, spec) for item in value))
    if spec.kind == "text":
        return _text(where, value, spec)
    integer = spec.kind == "integer"
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError(f"{where}: two numbers [low, high].")
        low, high = (_number(where, v, integer=integer, low=spec.low, high=spec.high) for v in value)
        if low > high:
            raise ValueError(f"{where}: the low number comes first ([low, high]).")
        return [low, high]
    return _number(where, value, integer=integer, low=spec.low, high=spec.high)


def _names(spec: _Spec) -> str:
    return f"values out of {', '.join(spec.choices)}" if spec.choices else "names"


def _text(where: str, value: Any, spec: _Spec) -> str:
    if spec.choices and value not in spec.choices:
        raise ValueError(f"{where}: one of {', '.join(spec.choices)}; not {value!r}.")
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise ValueError(f"{where}: a name of 1 to 100 characters; not {value!r}.")
    return _storable(where, value)


def _storable(where: str, value: str) -> str:
    """Text the database can compare: no NUL (PostgreSQL refuses it) and no lone surrogate (not UTF-8)."""
    if not storable_text(value):
        raise ValueError(f"{where}: {value!r} holds a character that is not text (NUL or a lone surrogate).")
    return value


def _number(where: str, value: Any, *, integer: bool, low: int | None, high: int | None, what: str = "") -> Any:
    kind = (int,) if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and not abs(value) <= MAX_NUMBER:  # NaN and infinities too
        raise ValueError(f"{where}: a number from -{MAX_NUMBER} to {MAX_NUMBER}; not {value!r}.")
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        what = what or ("a whole number" if integer else "a number")
        span = f" from {low} to {high}" if low is not None and high is not None else (
            f" of at least {low}" if low is not None else "")
        raise ValueError(f"{where}: {what}{span}; not {value!r}.")
    return value


def _course_ref(where: str, value: Any) -> str | int:
    if isinstance(value, str) and value.strip():
        return _storable(where, value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_NUMBER:
        return value
    raise ValueError(f"{where}: a course key or id; not {value!r}.")


# --- the compiler ------------------------------------------------------------------------------------------------


def member_query(rule: Rule, *, now: datetime, dialect: str) -> Select[tuple[int]]:
    """SELECT the ids of the customers the rule selects (never merged ones); one statement, CTEs included."""
    return select(m.Customer.id).where(m.Customer.merged_into_id.is_(None), _Compiler(now, dialect).rule(rule))


_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": operator.eq, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
}


def _compare(expr: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "between":
        return expr.between(value[0], value[1])  # type: ignore[no-any-return]
    return _COMPARE[op](expr, value)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class _Compiler:
    """A rule tree to a WHERE clause over `customers` (correlated EXISTS and scalar subqueries, one RFM CTE)."""

    def __init__(self, now: datetime, dialect: str) -> None:
        if now.tzinfo is None:
            raise ValueError("`now` must be timezone-aware")
        self.now = now
        self.dialect = dialect
        self._rfm: CTE | None = None

    def rule(self, rule: Rule) -> ColumnElement[bool]:
        if isinstance(rule, AllOf):
            return and_(true(), *map(self.rule, rule.all))
        if isinstance(rule, AnyOf):
            return or_(false(), *map(self.rule, rule.any))
        if isinstance(rule, NotOf):
            return not_(self.rule(rule.not_))
        return self.condition(rule)

    def condition(self, c: Condition) -> ColumnElement[bool]:
        customer = m.Customer
        field, op, value = c.field, c.op, c.value
        values = value if isinstance(value, list) else [value]
        if field == "tier":
            account, tier = m.LoyaltyAccount, m.LoyaltyTier
            in_tier = (select(account.id).join(tier, tier.id == account.tier_id)
                       .where(account.customer_id == customer.id, tier.name.in_(values)).exists())
            return ~in_tier if op == "not_in" else in_tier
        if field == "points":
            balance = select(m.LoyaltyAccount.balance).where(m.LoyaltyAccount.customer_id == customer.id)
            return _compare(func.coalesce(balance.scalar_subquery(), 0), op, value)
        if field == "language":
            return customer.language.in_(values)
        if field == "channel":
            identity = m.ChannelIdentity
            return select(identity.id).where(identity.customer_id == customer.id,
                                             identity.channel.in_(values)).exists()
        if field == "tags":
            return self._tags(op, values)
        if field == "consent":
            return customer.marketing_consent == value
        if field == "last_order_date":
            return self._when(self._orders, m.Order.placed_at, op, value)
        if field == "order_count":
            return _compare(self._order_aggregate(func.count(m.Order.id)), op, value)
        if field == "order_total":
            return _compare(func.coalesce(self._order_aggregate(func.sum(m.Order.amount)), 0), op, value)
        if field.startswith("rfm_"):
            rfm = self._rfm_scores()
            column = rfm.c[field.removeprefix("rfm_")]
            return customer.id.in_(select(rfm.c.customer_id).where(_compare(column, op, value)))
        if field == "last_contact":
            return self._when(self._inbound, m.Message.created_at, op, value)
        if field in ("csat", "nps"):
            if op == "answered":
                answered = self._scored(field).exists()
                return answered if value else ~answered
            latest = self._scored(field).order_by(m.SurveyInvitation.answered_at.desc().nulls_last(),
                                                  m.SurveyInvitation.id.desc()).limit(1).scalar_subquery()
            return and_(latest.is_not(None), _compare(latest, op, value))
        if field == "nps_group":
            latest = self._scored("nps").order_by(m.SurveyInvitation.answered_at.desc().nulls_last(),
                                                  m.SurveyInvitation.id.desc()).limit(1).scalar_subquery()
            return and_(latest.is_not(None), or_(*(latest.between(*NPS_GROUPS[g]) for g in values)))
        if field == "course":
            if op == "completed":
                return self._enrolled(value, m.Enrollment.status == EnrollmentStatus.COMPLETED)
            return ~self._enrolled(value) if op == "not_enrolled" else self._enrolled(value)
        assert field == "course_progress", field
        return self._enrolled(c.course, _compare(self._progress(), op, value))

    # --- pieces

    def _tags(self, op: str, values: list[str]) -> ColumnElement[bool]:
        tags = m.Customer.tags
        if self.dialect == "postgresql":  # a JSON array; anything else (a stray JSON null) reads as no tags
            array = case((func.json_typeof(tags) == "array", tags), else_=literal_column("'[]'::json"))
            each = func.json_array_elements_text(array).table_valued("value")
        else:
            each = func.json_each(tags).table_valued("value")
        if op == "has_all":
            held = select(func.count(distinct(each.c.value))).where(each.c.value.in_(values)).scalar_subquery()
            return held == len(values)
        has_any = select(each.c.value).where(each.c.value.in_(values)).exists()
        return ~has_any if op == "has_none" else has_any

    @staticmethod
    def _orders(*criteria: ColumnElement[bool]) -> Exists:
        order = m.Order
        return select(order.id).where(order.customer_id == m.Customer.id, order.status.in_(COUNTED_ORDERS),
                                      *criteria).exists()

    @staticmethod
    def _order_aggregate(aggregate: Any) -> Any:
        order = m.Order
        return select(aggregate).where(order.customer_id == m.Customer.id,
                                       order.status.in_(COUNTED_ORDERS)).scalar_subquery()

    @staticmethod
    def _inbound(*criteria: ColumnElement[bool]) -> Exists:
        message, conversation = m.Message, m.Conversation
        return (select(message.id).join(conversation, conversation.id == message.conversation_id)
                .where(conversation.customer_id == m.Customer.id, message.direction == MessageDirection.INCOMING,
                       *criteria).exists())

    def _when(self, rows: Callable[..., Exists], at: Any, op: str, value: Any) -> ColumnElement[bool]:
        """`rows(*criteria)`: EXISTS over the customer's dated rows (orders, inbound messages)."""
        if op == "never":
            return ~rows()
        if op == "within_days":
            return rows(at >= self.now - timedelta(days=value))
        if op == "after":
            if value >= date.max:  # no day comes after 9999-12-31 (and Python cannot count one)
                return false()
            return rows(at >= _day_start(value + timedelta(days=1)))
        since = self.now - timedelta(days=value) if op == "not_within_days" else _day_start(value)
        return and_(rows(), ~rows(at >= since))

    def _rfm_scores(self) -> CTE:
        if self._rfm is None:
            order, active = m.Order, aliased(m.Customer)
            per = (select(order.customer_id, func.max(order.placed_at).label("last"),
                          func.count(order.id).label("n"), func.sum(order.amount).label("total"))
                   .join(active, active.id == order.customer_id)
                   .where(active.merged_into_id.is_(None), order.status.in_(COUNTED_ORDERS))
                   .group_by(order.customer_id).subquery())
            size = func.count().over()

            def score(column: Any) -> Any:
                return 1 + (5 * (func.rank().over(order_by=column) - 1)) // size

            self._rfm = select(per.c.customer_id, score(per.c.last).label("recency"),
                               score(per.c.n).label("frequency"), score(per.c.total).label("monetary")).cte("rfm")
        return self._rfm

    @staticmethod
    def _scored(kind: str) -> Select[Any]:
        invitation, survey = m.SurveyInvitation, m.Survey
        return (select(invitation.score).join(survey, survey.id == invitation.survey_id)
                .where(invitation.customer_id == m.Customer.id, survey.kind == kind, invitation.score.is_not(None)))

    @staticmethod
    def _enrolled(course: str | int, *criteria: ColumnElement[bool]) -> Exists:
        enrollment, c = m.Enrollment, m.Course
        which = c.id == course if isinstance(course, int) else c.key == course
        return (select(enrollment.id).join(c, c.id == enrollment.course_id)
                .where(enrollment.customer_id == m.Customer.id, which, *criteria).exists())

    @staticmethod
    def _progress() -> Any:
        """The enrolment's percent of its course's lessons done; 100 once completed."""
        enrollment = m.Enrollment
        done = select(func.count(m.LessonCompletion.id)).where(m.LessonCompletion.enrollment_id == enrollment.id)
        total = select(func.count(m.Lesson.id)).where(m.Lesson.course_id == enrollment.course_id)
        return case((enrollment.status == EnrollmentStatus.COMPLETED, literal_column("100.0")),
                    else_=done.scalar_subquery() * literal_column("100.0") / func.nullif(total.scalar_subquery(), 0))
