"""Segments on a small hand-made data set: every field and operator, nested groups, RFM quintiles worked out by
hand, validation messages, saved segments and keyset pages of member ids.

NOW is 2024-06-01 12:00 UTC. Sixteen customers; oto is merged into ann and is never a member (yet matches much).

    name lang tags                  consent tier      points ids     counted orders (date, amount)
    ann  en   vip tea               yes     Gold      1200   tg      05-30 120, 03-10 80, 2023-12-01 50   (3, 250)
    bob  zh   tea                   no      Silver    50     wc      05-20 12:00 30                       (1, 30)
    cai  en   -                     yes     Platinum  6000   tg wc   05-31 500, 04-01 300, 02-01 200, 01-01 100
                                                                     (4, 1100; and a refunded one)
    dan  en   wholesale             no      -         0      -       only a cancelled order
    eve  zh   vip                   yes     Silver    0      tg      2023-06-01 45.50
    fay  en   vip tea wholesale     no      Gold      999    wc      02-29 60, 01-15 60                   (2, 120)
    gus  ru   -                     yes     -         0      tg      only a pending order
    hal  en   coffee                no      Silver    300    wc      04-20 75 (+ a cancelled one on 05-25)
    ivy  zh   tea coffee            yes     Gold      1000   tg      05-10 200, 05-02 150                 (2, 350)
    jon  en   (JSON null)           no      -         0      wc      -
    kim  en   vip                   yes     Platinum  5000   tg      03-01 00:00:00 1000
    lee  zh   -                     no      Silver    10     -       -
    max  en   tea                   yes     -         0      wc      05-20 12:00 10
    nia  en   vip                   no      Silver    100    tg      02-28 23:59:59 30
    oto  en   vip tea               yes     Gold      2000   tg      06-01 5000              merged into ann
    pia  en   -                     no      -         0      -       -

RFM among the ten active customers with counted orders (n = 10): score = 1 + floor(5 * (rank - 1) / 10), i.e.
ranks 1-2 -> 1, 3-4 -> 2, 5-6 -> 3, 7-8 -> 4, 9-10 -> 5; ties share the lower rank.
    recency (latest order, oldest first): eve 1, nia 2, fay 3, kim 4, hal 5, ivy 6, bob = max 7, ann 9, cai 10
        -> eve 1, nia 1, fay 2, kim 2, hal 3, ivy 3, bob 4, max 4, ann 5, cai 5
    frequency (order count): six with 1 order rank 1 -> 1; fay, ivy (2) rank 7 -> 4; ann (3) 9 -> 5; cai (4) 10 -> 5
    monetary (total): max 10 r1, bob = nia 30 r2, eve 45.5 r4, hal 75 r5, fay 120 r6, ann 250 r7, ivy 350 r8,
        kim 1000 r9, cai 1100 r10 -> max 1, bob 1, nia 1, eve 2, hal 3, fay 3, ann 4, ivy 4, kim 5, cai 5
(with the merged oto counted, n would be 11 and e.g. fay's recency 1).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_store import models as m
from crm_store.errors import ConflictError, DomainError, InvalidSegment, NotFound
from tests.support import make_agent

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
ACTIVE = frozenset("ann bob cai dan eve fay gus hal ivy jon kim lee max nia pia".split())


def at(month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0, *, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# name: (language, tags, consent, tier, points, channels)
PEOPLE: dict[str, tuple[str, list[str] | None, bool, str | None, int, tuple[str, ...]]] = {
    "ann": ("en", ["vip", "tea"], True, "Gold", 1200, ("telegram",)),
    "bob": ("zh", ["tea"], False, "Silver", 50, ("webchat",)),
    "cai": ("en", [], True, "Platinum", 6000, ("telegram", "webchat")),
    "dan": ("en", ["wholesale"], False, None, 0, ()),
    "eve": ("zh", ["vip"], True, "Silver", 0, ("telegram",)),
    "fay": ("en", ["vip", "tea", "wholesale"], False, "Gold", 999, ("webchat",)),
    "gus": ("ru", [], True, None, 0, ("telegram",)),
    "hal": ("en", ["coffee"], False, "Silver", 300, ("webchat",)),
    "ivy": ("zh", ["tea", "coffee"], True, "Gold", 1000, ("telegram",)),
    "jon": ("en", None, False, None, 0, ("webchat",)),  # tags stored as JSON null
    "kim": ("en", ["vip"], True, "Platinum", 5000, ("telegram",)),
    "lee": ("zh", [], False, "Silver", 10, ()),
    "max": ("en", ["tea"], True, None, 0, ("webchat",)),
    "nia": ("en", ["vip"], False, "Silver", 100, ("telegram",)),
    "oto": ("en", ["vip", "tea"], True, "Gold", 2000, ("telegram",)),
    "pia": ("en", [], False, None, 0, ()),
}
ORDERS: list[tuple[str, datetime, str, str]] = [  # customer, placed, amount, status
    ("ann", at(5, 30, 10), "120.00", "paid"), ("ann", at(3, 10), "80.00", "completed"),
    ("ann", at(12, 1, year=2023), "50.00", "shipped"),
    ("bob", at(5, 20), "30.00", "paid"),
    ("cai", at(5, 31), "500.00", "paid"), ("cai", at(4, 1), "300.00", "paid"), ("cai", at(2, 1), "200.00", "paid"),
    ("cai", at(1, 1), "100.00", "paid"), ("cai", at(4, 15), "999.00", "refunded"),
    ("dan", at(5, 15), "100.00", "cancelled"),
    ("eve", at(6, 1, year=2023), "45.50", "paid"),
    ("fay", at(2, 29), "60.00", "completed"), ("fay", at(1, 15), "60.00", "completed"),
    ("gus", at(5, 28), "40.00", "pending"),
    ("hal", at(4, 20), "75.00", "paid"), ("hal", at(5, 25), "500.00", "cancelled"),
    ("ivy", at(5, 10), "200.00", "paid"), ("ivy", at(5, 2, 9), "150.00", "shipped"),
    ("kim", at(3, 1, 0), "1000.00", "paid"),
    ("max", at(5, 20), "10.00", "paid"),
    ("nia", at(2, 28, 23, 59, 59), "30.00", "paid"),
    ("oto", at(6, 1, 10), "5000.00", "paid"),
]
INBOUND: list[tuple[str, datetime]] = [
    ("ann", at(5, 31, 9)), ("bob", at(4, 1, 10)), ("cai", at(5, 1, 8)), ("cai", at(5, 28)), ("eve", at(2, 29)),
    ("gus", at(5, 26, 13)), ("hal", at(3, 1, 0)), ("ivy", at(5, 25, 11, 59, 59)), ("jon", at(1, 10)),
    ("lee", at(11, 11, year=2023)), ("nia", at(6, 1, 11, 59)), ("oto", at(6, 1)),
]
OUTBOUND: list[tuple[str, datetime]] = [("ann", at(6, 1, 11)), ("fay", at(5, 30))]  # never a "contact"
# In insertion order (ids ascending): eve's and bob's latest answers have the lower ids.
SURVEY_ANSWERS: list[tuple[str, str, int | None, datetime | None]] = [  # customer, kind, score, answered
    ("ann", "csat", 2, at(3, 1)), ("ann", "csat", 5, at(5, 1)), ("bob", "csat", 1, at(5, 10)),
    ("cai", "csat", 4, at(5, 20)), ("cai", "csat", None, None), ("eve", "csat", 3, at(4, 2)),
    ("eve", "csat", 5, at(4, 1)), ("hal", "csat", 3, at(5, 5)), ("kim", "csat", None, None),
    ("oto", "csat", 5, at(5, 1)),
    ("ann", "nps", 10, at(5, 1)), ("bob", "nps", 9, at(5, 1)), ("bob", "nps", 6, at(1, 1)), ("cai", "nps", 7, at(5, 3)),
    ("fay", "nps", 0, at(4, 4)), ("gus", "nps", 6, at(5, 6)), ("ivy", "nps", 9, at(5, 2)), ("ivy", "nps", 8, at(5, 20)),
    ("jon", "nps", 10, at(2, 1)), ("lee", "nps", None, None),
]
COURSES = {"tea-101": 4, "brew-201": 2}  # key: lessons
# customer, course, completed?, lessons done
ENROLMENTS: list[tuple[str, str, bool, int]] = [
    ("ann", "tea-101", True, 4), ("ann", "brew-201", False, 1), ("bob", "tea-101", False, 2),
    ("cai", "tea-101", False, 0), ("eve", "tea-101", False, 3), ("fay", "brew-201", True, 1),
    ("kim", "tea-101", False, 1), ("oto", "tea-101", True, 4),
]


async def seed(db: Any) -> dict[str, int]:
    """Writes the data set above; returns each customer's id by name (and each course's id by key)."""
    async with db.sessionmaker() as session:
        tiers = {name: m.LoyaltyTier(name=name, threshold=threshold)
                 for name, threshold in (("Silver", 0), ("Gold", 1000), ("Platinum", 5000))}
        session.add_all(tiers.values())
        customers: dict[str, m.Customer] = {}
        for name, (language, tags, consent, _, _, _) in PEOPLE.items():
            customers[name] = m.Customer(name=name, language=language, tags=tags, marketing_consent=consent)
            session.add(customers[name])
            await session.flush()  # ids in the table's order
        ids = {name: c.id for name, c in customers.items()}
        customers["oto"].merged_into_id = ids["ann"]
        conversations: dict[str, m.Conversation] = {}
        for name, (_, _, _, tier, points, channels) in PEOPLE.items():
            if tier is not None:
                session.add(m.LoyaltyAccount(customer_id=ids[name], tier_id=tiers[tier].id, balance=points,
                                             lifetime_points=max(points, tiers[tier].threshold)))
            for channel in channels:
                session.add(m.ChannelIdentity(customer_id=ids[name], channel=channel, external_id=f"{name}-{channel}"))
            conversations[name] = m.Conversation(customer_id=ids[name])
            session.add(conversations[name])
        await session.flush()
        for n, (name, placed, amount, status) in enumerate(ORDERS):
            session.add(m.Order(customer_id=ids[name], external_ref=f"o{n}", amount=Decimal(amount),
                                placed_at=placed, status=status))
        for rows, direction, sender in ((INBOUND, "incoming", "customer"), (OUTBOUND, "outgoing", "agent")):
            for name, created in rows:
                session.add(m.Message(conversation_id=conversations[name].id, direction=direction, sender=sender,
                                      text="hi", created_at=created))
        surveys = {kind: m.Survey(key=kind, kind=kind, title=kind.upper()) for kind in ("csat", "nps")}
        session.add_all(surveys.values())
        await session.flush()
        for n, (name, kind, score, answered) in enumerate(SURVEY_ANSWERS):
            session.add(m.SurveyInvitation(survey_id=surveys[kind].id, customer_id=ids[name], dedupe_key=f"s{n}",
                                           score=score, answered_at=answered, sent_at=at(1, 1)))
            await session.flush()
        lessons: dict[str, list[m.Lesson]] = {}
        for key, count in COURSES.items():
            course = m.Course(key=key, title=key, published=True)
            session.add(course)
            await session.flush()
            ids[key] = course.id
            lessons[key] = [m.Lesson(course_id=course.id, position=p, title=f"{key} {p}") for p in range(1, count + 1)]
            session.add_all(lessons[key])
        await session.flush()
        for name, key, completed, done in ENROLMENTS:
            enrolment = m.Enrollment(course_id=ids[key], customer_id=ids[name], current_position=done + 1,
                                     status="completed" if completed else "in_progress")
            session.add(enrolment)
            await session.flush()
            session.add_all(m.LessonCompletion(enrollment_id=enrolment.id, lesson_id=lesson.id)
                            for lesson in lessons[key][:done])
        await session.commit()
    return ids


async def members(crm: Any, ids: dict[str, int], rule: dict[str, Any], *, now: datetime = NOW) -> frozenset[str]:
    """The names of the customers the rule selects (every page), checked against the count."""
    by_id = {v: k for k, v in ids.items() if k in PEOPLE}
    page = await crm.segments.member_ids(rules=rule, now=now, limit=5000)
    assert page.next_after_id is None
    assert await crm.segments.count(rules=rule, now=now) == len(page.ids)
    return frozenset(by_id[i] for i in page.ids)


def c(field: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"field": field, "op": op, **({} if value is None else {"value": value}), **extra}


CASES: dict[str, list[tuple[dict[str, Any], frozenset[str]]]] = {
    "tier": [
        (c("tier", "eq", "Gold"), names("ann fay ivy")),
        (c("tier", "in", ["Silver", "Platinum"]), names("bob cai eve hal kim lee nia")),
        (c("tier", "not_in", ["Silver"]), names("ann cai dan fay gus ivy jon kim max pia")),
    ],
    "points": [
        (c("points", "gte", 1000), names("ann cai ivy kim")),
        (c("points", "gt", 5000), names("cai")),
        (c("points", "lt", 100), names("bob eve lee dan gus jon max pia")),
        (c("points", "lte", 10), names("eve lee dan gus jon max pia")),
        (c("points", "eq", 0), names("eve dan gus jon max pia")),
        (c("points", "between", [100, 999]), names("fay hal nia")),
    ],
    "language": [
        (c("language", "eq", "zh"), names("bob eve ivy lee")),
        (c("language", "in", ["zh", "ru"]), names("bob eve gus ivy lee")),
    ],
    "channel": [
        (c("channel", "eq", "telegram"), names("ann cai eve gus ivy kim nia")),
        (c("channel", "eq", "webchat"), names("bob cai fay hal jon max")),
        (c("channel", "in", ["telegram", "webchat"]), names("ann bob cai eve fay gus hal ivy jon kim max nia")),
    ],
    "tags": [
        (c("tags", "has_any", ["vip"]), names("ann eve fay kim nia")),
        (c("tags", "has_any", ["tea", "coffee"]), names("ann bob fay hal ivy max")),
        (c("tags", "has_all", ["vip", "tea"]), names("ann fay")),
        (c("tags", "has_all", ["tea", "coffee"]), names("ivy")),
        (c("tags", "has_none", ["vip", "tea"]), names("cai dan gus hal jon lee pia")),
    ],
    "consent": [
        (c("consent", "is", True), names("ann cai eve gus ivy kim max")),
        (c("consent", "is", False), names("bob dan fay hal jon lee nia pia")),
    ],
    "last_order_date": [
        (c("last_order_date", "within_days", 7), names("ann cai")),
        (c("last_order_date", "within_days", 30), names("ann bob cai ivy max")),
        (c("last_order_date", "not_within_days", 30), names("eve fay hal kim nia")),
        (c("last_order_date", "never"), names("dan gus jon lee pia")),
        (c("last_order_date", "before", "2024-03-01"), names("eve fay nia")),
        (c("last_order_date", "after", "2024-03-01"), names("ann bob cai hal ivy max")),
        (c("last_order_date", "after", "2024-02-29"), names("ann bob cai hal ivy kim max")),
    ],
    "order_count": [
        (c("order_count", "gte", 2), names("ann cai fay ivy")),
        (c("order_count", "gt", 3), names("cai")),
        (c("order_count", "eq", 0), names("dan gus jon lee pia")),
        (c("order_count", "lt", 1), names("dan gus jon lee pia")),
        (c("order_count", "lte", 1), names("bob eve hal kim max nia dan gus jon lee pia")),
        (c("order_count", "between", [1, 2]), names("bob eve fay hal ivy kim max nia")),
    ],
    "order_total": [
        (c("order_total", "gt", 100), names("ann cai fay ivy kim")),
        (c("order_total", "gte", 1000), names("cai kim")),
        (c("order_total", "eq", 45.5), names("eve")),
        (c("order_total", "lt", 45.5), names("bob max nia dan gus jon lee pia")),
        (c("order_total", "lte", 30), names("bob max nia dan gus jon lee pia")),
        (c("order_total", "between", [30, 75]), names("bob eve hal nia")),
    ],
    "rfm": [
        (c("rfm_recency", "gte", 4), names("ann bob cai max")),
        (c("rfm_recency", "eq", 1), names("eve nia")),
        (c("rfm_recency", "lte", 5), names("ann bob cai eve fay hal ivy kim max nia")),  # never-ordered: no score
        (c("rfm_frequency", "eq", 1), names("bob eve hal kim max nia")),
        (c("rfm_frequency", "gt", 3), names("ann cai fay ivy")),
        (c("rfm_monetary", "between", [2, 3]), names("eve fay hal")),
        (c("rfm_monetary", "eq", 5), names("cai kim")),
        (c("rfm_monetary", "lt", 2), names("bob max nia")),
    ],
    "last_contact": [
        (c("last_contact", "within_days", 7), names("ann cai gus nia")),
        (c("last_contact", "not_within_days", 7), names("bob eve hal ivy jon lee")),
        (c("last_contact", "never"), names("dan fay kim max pia")),
        (c("last_contact", "before", "2024-03-01"), names("eve jon lee")),
        (c("last_contact", "after", "2024-02-29"), names("ann bob cai gus hal ivy nia")),
    ],
    "csat": [
        (c("csat", "gte", 4), names("ann cai")),
        (c("csat", "lt", 3), names("bob")),
        (c("csat", "eq", 3), names("eve hal")),
        (c("csat", "eq", 5), names("ann")),  # eve's 5 came before her 3 (but has the higher id)
        (c("csat", "between", [1, 3]), names("bob eve hal")),
        (c("csat", "answered", True), names("ann bob cai eve hal")),
        (c("csat", "answered", False), names("dan fay gus ivy jon kim lee max nia pia")),
    ],
    "nps": [
        (c("nps", "gte", 9), names("ann bob jon")),
        (c("nps", "lte", 6), names("fay gus")),
        (c("nps", "gt", 6), names("ann bob cai ivy jon")),
        (c("nps", "answered", False), names("dan eve hal kim lee max nia pia")),
        (c("nps_group", "eq", "promoter"), names("ann bob jon")),
        (c("nps_group", "eq", "passive"), names("cai ivy")),
        (c("nps_group", "in", ["detractor", "passive"]), names("cai fay gus ivy")),
    ],
    "course": [
        (c("course", "enrolled", "tea-101"), names("ann bob cai eve kim")),
        (c("course", "completed", "tea-101"), names("ann")),
        (c("course", "completed", "brew-201"), names("fay")),
        (c("course", "not_enrolled", "tea-101"), names("dan fay gus hal ivy jon lee max nia pia")),
        (c("course_progress", "gte", 50, course="tea-101"), names("ann bob eve")),
        (c("course_progress", "lt", 50, course="tea-101"), names("cai kim")),
        (c("course_progress", "eq", 0, course="tea-101"), names("cai")),
        (c("course_progress", "between", [25, 75], course="tea-101"), names("bob eve kim")),
        (c("course_progress", "eq", 100, course="brew-201"), names("fay")),  # completed, though 1 lesson of 2 recorded
        (c("course_progress", "eq", 50, course="brew-201"), names("ann")),
    ],
    "groups": [
        ({"all": []}, ACTIVE),
        ({"any": []}, frozenset()),
        ({"all": [c("consent", "is", True),
                  {"any": [c("tier", "eq", "Gold"), c("tags", "has_any", ["tea"])]}]}, names("ann ivy max")),
        ({"not": {"any": [c("channel", "eq", "telegram"), c("language", "eq", "zh")]}},
         names("dan fay hal jon max pia")),
        ({"any": [{"all": [c("rfm_recency", "gte", 4), {"not": c("consent", "is", True)}]},
                  {"all": [c("last_order_date", "never"), c("last_contact", "within_days", 7)]}]}, names("bob gus")),
        # five groups deep
        ({"all": [{"any": [{"not": {"all": [{"any": [c("tier", "eq", "Gold"), c("tier", "eq", "Platinum")]}]}}]}]},
         names("bob dan eve gus hal jon lee max nia pia")),
    ],
}


@pytest.mark.parametrize("group", list(CASES))
async def test_each_field_and_operator_selects_exactly_the_expected_customers(crm, db, group: str) -> None:  # type: ignore[no-untyped-def]
    ids = await seed(db)
    wrong = {}
    for rule, expected in CASES[group]:
        got = await members(crm, ids, rule)
        if got != expected:
            wrong[str(rule)] = {"missing": sorted(expected - got), "extra": sorted(got - expected)}
    assert wrong == {}


NULLABLE = [  # conditions on values a customer may lack: `not` must select exactly the rest
    c("tier", "eq", "Gold"), c("last_order_date", "before", "2024-03-01"), c("last_contact", "before", "2024-03-01"),
    c("rfm_recency", "gte", 4), c("csat", "gte", 4), c("nps_group", "eq", "detractor"),
    c("course_progress", "lt", 50, course="tea-101"), c("tags", "has_any", ["vip"]),
]


async def test_not_is_the_exact_complement_even_where_values_are_missing(crm, db) -> None:  # type: ignore[no-untyped-def]
    ids = await seed(db)
    for rule in NULLABLE:
        assert await members(crm, ids, {"not": rule}) == ACTIVE - await members(crm, ids, rule), rule


async def test_rfm_scores_are_the_hand_computed_quintiles(crm, db) -> None:  # type: ignore[no-untyped-def]
    ids = await seed(db)
    expected = {
        "recency": {"eve": 1, "nia": 1, "fay": 2, "kim": 2, "hal": 3, "ivy": 3, "bob": 4, "max": 4, "ann": 5, "cai": 5},
        "frequency": {"bob": 1, "eve": 1, "hal": 1, "kim": 1, "max": 1, "nia": 1, "fay": 4, "ivy": 4, "ann": 5,
                      "cai": 5},
        "monetary": {"max": 1, "bob": 1, "nia": 1, "eve": 2, "hal": 3, "fay": 3, "ann": 4, "ivy": 4, "kim": 5,
                     "cai": 5},
    }
    for score, by_name in expected.items():
        found = {}
        for value in range(1, 6):
            for name in await members(crm, ids, c(f"rfm_{score}", "eq", value)):
                found[name] = value
        assert found == by_name, score


async def test_time_relative_rules_follow_the_given_now(crm, db) -> None:  # type: ignore[no-untyped-def]
    ids = await seed(db)
    rule = c("last_contact", "within_days", 7)
    assert await members(crm, ids, rule, now=NOW + timedelta(days=2)) == names("ann cai nia")  # gus's 05-26 13:00
    assert await members(crm, ids, rule, now=NOW + timedelta(days=8)) == frozenset()
    # within is inclusive: a second earlier, ivy's message of 05-25 11:59:59 is just in
    assert await members(crm, ids, rule, now=NOW - timedelta(seconds=1)) == names("ann cai gus ivy nia")


BAD_RULES: list[tuple[Any, str]] = [
    (c("colour", "eq", "red"), "Unknown field 'colour'; the fields are tier, points, language, channel, tags,"),
    (c("tier", "gt", 3), "tier: no operator 'gt'; use eq, in or not_in."),
    (c("points", "between", [100, 10]), "points between: the low number comes first ([low, high])."),
    (c("points", "between", [1]), "points between: two numbers [low, high]."),
    (c("points", "gte", "100"), "points gte: a whole number; not '100'."),
    (c("points", "eq", True), "points eq: a whole number; not True."),
    (c("points", "gte", 10**30), f"points gte: a number from -{2**31 - 1} to {2**31 - 1}; not {10**30}."),
    (c("order_total", "lt", float("nan")), f"order_total lt: a number from -{2**31 - 1} to {2**31 - 1}; not nan."),
    (c("order_count", "gte", -1), "order_count gte: a whole number of at least 0; not -1."),
    (c("rfm_recency", "eq", 6), "rfm_recency eq: a whole number from 1 to 5; not 6."),
    (c("course_progress", "gt", 150, course="tea-101"), "course_progress gt: a number from 0 to 100; not 150."),
    (c("course_progress", "gte", 50), 'course_progress needs "course": a course key or id; not None.'),
    (c("tags", "has_any", ["vip"], course="tea-101"), "tags: only course_progress names a course."),
    (c("channel", "eq", "email"), "channel eq: one of telegram, webchat; not 'email'."),
    (c("nps_group", "in", ["fan"]), "nps_group in: one of promoter, passive, detractor; not 'fan'."),
    (c("language", "in", "zh"), "language in: a list of 1 to 100 names."),
    (c("tags", "has_all", []), "tags has_all: a list of 1 to 100 names."),
    (c("consent", "is", "yes"), "consent is: true or false."),
    (c("last_order_date", "before", "01/03/2024"), "last_order_date before: a date as YYYY-MM-DD."),
    (c("last_contact", "within_days", 0), "last_contact within_days: a whole number of days from 1 to 36500; not 0."),
    (c("last_order_date", "never", 3), "last_order_date never: takes no value."),
    (c("course", "enrolled", ""), "course enrolled: a course key or id; not ''."),
    ({"field": "tier"}, "A condition needs a field and an op."),
    ({"field": "tier", "op": "eq", "value": "Gold", "colour": "red"},
     "A condition has field, op and value; 'colour' is not one of them."),
    ({"all": {"field": "tier", "op": "eq", "value": "Gold"}}, '"all" holds a list of rules.'),
    ({"all": [], "any": []}, "A group has one key (all, any or not); this one has all, any."),
    ({"not": ["vip"]}, "A rule is a condition"),
    ("vip", "A rule is a condition"),
    ({"all": [{"any": [{"not": {"all": [{"any": [{"all": []}]}]}}]}]}, "Groups nest at most 5 deep."),
    ({"any": [c("points", "gt", n) for n in range(51)]}, "A segment has at most 50 conditions and 50 groups."),
]


@pytest.mark.parametrize(("rule", "message"), BAD_RULES, ids=[message for _, message in BAD_RULES])
async def test_a_bad_rule_is_refused_with_what_is_allowed(crm, rule: Any, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSegment, match=f"^{re.escape(message)}"):
        await crm.segments.preview(rules=rule)


async def test_tiers_and_courses_a_rule_names_must_exist(crm, db) -> None:  # type: ignore[no-untyped-def]
    await seed(db)
    tiers = r"^tier: there is no tier 'gold'; the tiers are Gold, Platinum, Silver\.$"
    with pytest.raises(InvalidSegment, match=tiers):
        await crm.segments.preview(rules=c("tier", "in", ["Silver", "gold"]))
    with pytest.raises(InvalidSegment, match=r"^course: there is no course 'tea-999'\.$"):
        await crm.segments.create(name="Tea", rules=c("course_progress", "gte", 5, course="tea-999"))
    with pytest.raises(InvalidSegment, match=r"^course: there is no course 999\.$"):
        await crm.segments.preview(rules=c("course", "enrolled", 999))
    assert await crm.segments.list() == []


async def test_preview_counts_and_samples_the_newest_members(crm, db) -> None:  # type: ignore[no-untyped-def]
    ids = await seed(db)
    preview = await crm.segments.preview(rules=c("tags", "has_any", ["vip"]), sample=3, now=NOW)
    assert preview.count == 5
    assert [v.name for v in preview.sample] == ["nia", "kim", "fay"]  # oto (newer, merged) is not one
    assert preview.sample[0].id == ids["nia"] and preview.sample[0].tags == ("vip",)
    assert (await crm.segments.preview(rules={"all": []}, sample=0)).sample == ()


async def test_saved_segments_are_created_listed_changed_and_deleted(crm, db) -> None:  # type: ignore[no-untyped-def]
    ids = await seed(db)
    agent = await make_agent(crm)
    vip = await crm.segments.create(name="  VIP tea lovers ", description="for the tasting",
                                    rules={"all": [c("tags", "has_all", ["vip", "tea", "vip"])]}, agent_id=agent.id)
    assert (vip.name, vip.created_by_agent_id) == ("VIP tea lovers", agent.id)
    assert vip.rules == {"all": [{"field": "tags", "op": "has_all", "value": ["vip", "tea"]}]}  # as stored
    lapsed = await crm.segments.create(name="Lapsed", rules=c("last_order_date", "not_within_days", 30))
    assert [s.name for s in await crm.segments.list()] == ["Lapsed", "VIP tea lovers"]
    assert await crm.segments.count(segment_id=vip.id, now=NOW) == 2
    with pytest.raises(ConflictError):
        await crm.segments.create(name="Lapsed", rules={"all": []})
    with pytest.raises(ConflictError):
        await crm.segments.update(segment_id=vip.id, name="Lapsed")
    changed = await crm.segments.update(segment_id=vip.id, rules=c("tier", "eq", "Gold"))
    assert (changed.name, changed.description, changed.rules) == ("VIP tea lovers", "for the tasting",
                                                                  c("tier", "eq", "Gold"))
    page = await crm.segments.member_ids(segment_id=vip.id, now=NOW)
    assert page.ids == tuple(sorted(ids[n] for n in ("ann", "fay", "ivy")))
    await crm.segments.delete(segment_id=lapsed.id)
    assert [s.id for s in await crm.segments.list()] == [vip.id]
    for call in (crm.segments.get(segment_id=lapsed.id), crm.segments.delete(segment_id=lapsed.id),
                 crm.segments.update(segment_id=lapsed.id, name="x"), crm.segments.count(segment_id=lapsed.id),
                 crm.segments.member_ids(segment_id=lapsed.id)):
        with pytest.raises(NotFound):
            await call
    with pytest.raises(InvalidSegment, match=r"^A segment needs a name of 1 to 100 characters\.$"):
        await crm.segments.create(name="  ", rules={"all": []})
    with pytest.raises(DomainError):  # a bad rule is never stored
        await crm.segments.update(segment_id=vip.id, rules=c("tier", "gt", 1))
    assert (await crm.segments.get(segment_id=vip.id)).rules == c("tier", "eq", "Gold")


async def test_member_ids_come_in_keyset_pages(crm, db) -> None:  # type: ignore[no-untyped-def]
    ids = await seed(db)
    everyone = sorted(ids[n] for n in ACTIVE)
    seen: list[int] = []
    after, pages = 0, 0
    while True:
        page = await crm.segments.member_ids(rules={"all": []}, after_id=after, limit=4)
        seen.extend(page.ids)
        pages += 1
        assert len(page.ids) == (4 if pages < 4 else 3)
        if page.next_after_id is None:
            break
        assert page.next_after_id == page.ids[-1]
        after = page.next_after_id
    assert (seen, pages) == (everyone, 4)
    exact = await crm.segments.member_ids(rules=c("tags", "has_any", ["vip"]), limit=5, now=NOW)
    assert len(exact.ids) == 5 and exact.next_after_id is None  # a full last page says it is the last
    with pytest.raises(ValueError):
        await crm.segments.member_ids(rules={"all": []}, limit=0)
