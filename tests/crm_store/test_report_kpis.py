"""The Reports section's KPIs on the hand-made data set of tests/crm_store/kpi_seed.py: every number of every report
is worked out by hand below (from the seed's tables, not by the code under test), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from crm_store.services.kpis import Periods
from tests.crm_store.kpi_seed import AFTER_SALES, CARE, END, START, seed_kpis

JAN, FEB, MAR = ((date(2024, m, 1), date(2024, m, last)) for m, last in ((1, 31), (2, 29), (3, 31)))


def same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    """Row by row; floats to a millionth."""
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w), (g, w)


@pytest.fixture
async def seeded(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return await seed_kpis(db)


async def test_csat_and_nps_by_month_count_the_answers_given_in_each(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    report = await crm.kpis.satisfaction(start=START, end=END, granularity="month")

    def figures(row: Any) -> tuple[Any, ...]:
        c, n = row.csat, row.nps
        return (row.period.label, row.period.start, row.period.end, c.n, c.mean, c.satisfied_pct,
                n.n, n.promoters, n.passives, n.detractors, n.score)

    # CSAT Jan [5 (sent in December), 4]; Feb [3]; Mar [4, 2, 5]; the answers of 2023-12-31 and 2024-04-01 and the
    # unanswered invitation do not count. NPS Jan [6, 9, 10 at 01-31 23:59:59.999999]; Feb [7, 8, 0, 3]; Mar none.
    same([figures(r) for r in (*report.rows, report.total)], [
        ("2024-01", *JAN, 2, 4.5, 100.0, 3, 2, 0, 1, 100 * (2 - 1) / 3),
        ("2024-02", *FEB, 1, 3.0, 0.0, 4, 0, 2, 2, 100 * (0 - 2) / 4),
        ("2024-03", *MAR, 3, 11 / 3, 200 / 3, 0, 0, 0, 0, None),
        ("Total", START, END, 6, 23 / 6, 400 / 6, 7, 2, 2, 3, 100 * (2 - 3) / 7),
    ])
    assert report.rows[0].csat.by_score == {5: 1, 4: 1}


async def test_satisfaction_by_iso_week_clips_the_last_week_to_the_range(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    report = await crm.kpis.satisfaction(start=date(2024, 1, 1), end=date(2024, 1, 31), granularity="week")
    # W01 01-01..07: NPS 6 (01-07 23:59:59); W02 01-08..14: CSAT 5, NPS 9 (01-08 00:00); W03: CSAT 4; W04 none;
    # W05 01-29..(02-04, clipped to) 01-31: NPS 10.
    same([(r.period.label, r.period.start, r.period.end, r.csat.n, r.csat.mean, r.nps.n, r.nps.score)
          for r in report.rows], [
        ("2024-W01", date(2024, 1, 1), date(2024, 1, 7), 0, None, 1, -100.0),
        ("2024-W02", date(2024, 1, 8), date(2024, 1, 14), 1, 5.0, 1, 100.0),
        ("2024-W03", date(2024, 1, 15), date(2024, 1, 21), 1, 4.0, 0, None),
        ("2024-W04", date(2024, 1, 22), date(2024, 1, 28), 0, None, 0, None),
        ("2024-W05", date(2024, 1, 29), date(2024, 1, 31), 0, None, 1, 100.0),
    ])


async def test_containment_by_month_and_by_day(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    def figures(r: Any) -> tuple[Any, ...]:
        return (r.period.label, r.conversations, r.engaged, r.handed_off, r.contained, r.containment_pct,
                r.handoff_pct)

    months = await crm.kpis.containment(start=START, end=END, granularity="month")
    # Jan K1 (contained) K2 (X1) K3 (no customer message); Feb K4 K5 (contained) K6 (X2); Mar K7 K8 (tickets) K9.
    # K11, K0 (2023) and K10 (04-01 00:00) are outside.
    same([figures(r) for r in (*months.rows, months.total)], [
        ("2024-01", 3, 2, 1, 1, 50.0, 50.0),
        ("2024-02", 3, 3, 1, 2, 200 / 3, 100 / 3),
        ("2024-03", 3, 3, 2, 1, 100 / 3, 200 / 3),
        ("Total", 9, 8, 4, 4, 50.0, 50.0),
    ])
    days = await crm.kpis.containment(start=date(2024, 2, 29), end=date(2024, 3, 1), granularity="day")
    # K5 at 02-29 23:59:59.999999 (contained), K7 at 03-01 00:00 (handed off)
    same([figures(r) for r in (*days.rows, days.total)], [
        ("2024-02-29", 1, 1, 0, 1, 100.0, 0.0), ("2024-03-01", 1, 1, 1, 0, 0.0, 100.0),
        ("Total", 2, 2, 1, 1, 50.0, 50.0),
    ])


async def test_first_response_and_resolution_times_by_month(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    report = await crm.kpis.response_times(start=START, end=END, granularity="month")

    def figures(r: Any) -> tuple[Any, ...]:
        f, s = r.first_response, r.resolution
        return (r.period.label, f.n, f.median_seconds, f.p90_seconds, s.n, s.median_seconds, s.p90_seconds)

    # Tickets created in the range: Jan X1 (600 s, 3600 s); Feb X2 (1800, 7200); Mar X3 (1200, -), X4 (-, -),
    # X5 (300, 1800), X9 (2400, 14400). p90 of n values = v[k] + f * (v[k+1] - v[k]) with 0.9 * (n - 1) = k + f.
    # Mar FRT [300, 1200, 2400]: median 1200, p90 1200 + 0.8 * 1200 = 2160; resolution [1800, 14400]: median 8100,
    # p90 1800 + 0.9 * 12600 = 13140. Range FRT [300, 600, 1200, 1800, 2400]: p90 1800 + 0.6 * 600 = 2160;
    # resolution [1800, 3600, 7200, 14400]: median 5400, p90 7200 + 0.7 * 7200 = 12240. X6, X7, X8: outside.
    same([figures(r) for r in (*report.rows, report.total)], [
        ("2024-01", 1, 600.0, 600.0, 1, 3600.0, 3600.0),
        ("2024-02", 1, 1800.0, 1800.0, 1, 7200.0, 7200.0),
        ("2024-03", 3, 1200.0, 2160.0, 2, 8100.0, 13140.0),
        ("Total", 5, 1200.0, 2160.0, 4, 5400.0, 12240.0),
    ])
    empty = await crm.kpis.response_times(start=date(2024, 4, 2), end=date(2024, 4, 3), granularity="day")
    assert [(r.first_response.n, r.first_response.median_seconds, r.resolution.p90_seconds)
            for r in (*empty.rows, empty.total)] == [(0, None, None)] * 3


async def test_retention_and_repeat_purchases_by_month(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    report = await crm.kpis.retention(start=START, end=END, granularity="month")

    def figures(r: Any) -> tuple[Any, ...]:
        return (r.period.label, r.customers, r.orders, r.repeat_customers, r.repeat_pct, r.retained,
                r.retention_pct)

    # Counted orders: Jan A A B D (D's at 01-31 23:59:59.999999); Feb A C; Mar B C (03-31 23:59:59) -- A's refund,
    # C's cancellation, E's pending order and the orders of 2023-12-31 and 2024-04-01 do not count.
    # Jan -> Feb: of A B D, A ordered again; Feb -> Mar: of A C, C; March's next month is outside the range.
    # The range: A 3, B 2, C 2, D 1 orders: 3 of 4 customers ordered twice or more.
    same([figures(r) for r in (*report.rows, report.total)], [
        ("2024-01", 3, 4, 1, 100 / 3, 1, 100 / 3),
        ("2024-02", 2, 2, 0, 0.0, 1, 50.0),
        ("2024-03", 2, 2, 0, 0.0, None, None),
        ("Total", 4, 8, 3, 75.0, None, None),
    ])


async def test_retention_by_week(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    report = await crm.kpis.retention(start=date(2024, 1, 1), end=date(2024, 1, 21), granularity="week")
    # W01 A (01-05); W02 B (01-10); W03 A (01-20, a Saturday): nobody ordered two weeks running.
    assert [(r.period.label, r.customers, r.orders, r.retained, r.retention_pct) for r in report.rows] == [
        ("2024-W01", 1, 1, 0, 0.0), ("2024-W02", 1, 1, 0, 0.0), ("2024-W03", 1, 1, None, None)]
    total = report.total
    assert (total.customers, total.orders, total.repeat_customers, total.repeat_pct) == (2, 3, 1, 50.0)


async def test_tickets_by_category_and_by_team(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    report = await crm.kpis.tickets(start=START, end=END)
    # opened: created in the range; resolved: resolved_at in the range (X7, opened in 2023, resolved 01-02);
    # open now: new/open/pending whenever opened (X8, opened in 2023). Without a category, the handoff reason.
    # X6 (shipping, all of it on 04-01) is no row.
    assert [(c.name, c.opened, c.resolved, c.open_now) for c in report.by_category] == [
        ("orders", 3, 3, 1),  # X1 X3 X9 opened; X1 X9 X7 resolved; X3 open
        ("handoff: complaint", 1, 0, 1),  # X4
        ("handoff: no_answer", 1, 1, 0),  # X2
        ("refunds", 1, 1, 1),  # X5 opened and resolved; X8 open
    ]
    assert [(c.name, c.opened, c.resolved, c.open_now) for c in report.by_team] == [
        (CARE, 3, 3, 1),  # X1 X3 X9; X1 X9 X7; X3
        (AFTER_SALES, 2, 2, 1),  # X2 X5; X2 X5; X8
        ("No team", 1, 0, 1),  # X4
    ]
    assert (report.total.opened, report.total.resolved, report.total.open_now) == (6, 5, 3)


async def test_agent_performance(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    rows = await crm.kpis.agent_performance(start=START, end=END)
    # Ann: resolved X1 X5; FRT [600 X1, 1200 X3, 300 X5] -> 600; resolution [3600, 1800] -> 2700; CSAT 5 4 2;
    # replies 3 (her private note does not count). Bob: resolved X2 X9 and X7 (opened in 2023); FRT [1800, 2400];
    # resolution [7200, 14400]; CSAT 3 5 (the 04-01 answer is outside); replies 2 (04-01 is outside).
    # Cat: active, nothing done. Dan: inactive, nothing done: no row. Eve: inactive, one reply.
    same([(a.name, a.active, a.resolved, a.first_response_median_seconds, a.resolution_median_seconds, a.csat.n,
           a.csat.mean, a.replies) for a in rows], [
        ("Ann", True, 2, 600.0, 2700.0, 3, 11 / 3, 3),
        ("Bob", True, 3, 2100.0, 10800.0, 2, 4.0, 2),
        ("Cat", True, 0, None, None, 0, None, 0),
        ("Eve", False, 0, None, None, 0, None, 1),
    ])
    assert [a.agent_id for a in rows] == [seeded[name] for name in ("Ann", "Bob", "Cat", "Eve")]


async def test_top_intents_with_their_share_and_containment(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    rows = await crm.kpis.intents(start=START, end=END)
    # 11 bot replies with an intent (K1 order_status x2 + greet, K2 order_status + human_handoff, K4 faq, K5 faq +
    # greet, K6 faq, K7 refund, K9 order_status); K1's customer message with an intent is no bot reply.
    same([(i.intent, i.replies, i.share_pct, i.conversations, i.contained, i.containment_pct) for i in rows], [
        ("order_status", 4, 400 / 11, 3, 2, 200 / 3),  # K1 K2 K9; K2 handed off
        ("faq", 3, 300 / 11, 3, 2, 200 / 3),  # K4 K5 K6; K6 handed off
        ("greet", 2, 200 / 11, 2, 2, 100.0),  # K1 K5
        ("human_handoff", 1, 100 / 11, 1, 0, 0.0),  # K2
        ("refund", 1, 100 / 11, 1, 0, 0.0),  # K7
    ])
    february = await crm.kpis.intents(start=FEB[0], end=FEB[1], top=1)
    same([(i.intent, i.replies, i.share_pct, i.conversations, i.contained) for i in february],
         [("faq", 3, 75.0, 3, 2)])  # of 4 (faq K4 K5 K6, greet K5)


async def test_the_weekly_summary_sets_a_week_beside_the_one_before(crm, seeded) -> None:  # type: ignore[no-untyped-def]
    summary = await crm.kpis.weekly(week=date(2024, 3, 27))  # a Wednesday of 2024-W13 (03-25..03-31)
    assert (summary.week, summary.start, summary.end) == ("2024-W13", date(2024, 3, 25), date(2024, 3, 31))
    now, before = summary.current, summary.previous
    assert (now.volume.period.label, before.volume.period.label) == ("2024-W13", "2024-W12")
    # W13: K9 (contained); X9 opened and resolved (FRT 2400 s, resolution 14400 s); CSAT 5; C's order of 03-31.
    assert (now.volume.conversations, now.volume.engaged, now.volume.containment_pct) == (1, 1, 100.0)
    assert (now.tickets.opened, now.tickets.resolved, now.tickets.open_now) == (1, 1, 3)  # open: X3 X4 X8
    assert (now.times.first_response.median_seconds, now.times.resolution.median_seconds) == (2400.0, 14400.0)
    assert (now.satisfaction.csat.n, now.satisfaction.csat.mean, now.satisfaction.nps.n) == (1, 5.0, 0)
    assert (now.orders.customers, now.orders.orders) == (1, 1)
    # W12: no conversation; X5 opened and resolved (300 s, 1800 s); CSAT 4 and 2; no order.
    assert (before.volume.conversations, before.volume.containment_pct) == (0, None)
    assert (before.tickets.opened, before.tickets.resolved) == (1, 1)
    assert (before.times.first_response.median_seconds, before.times.resolution.median_seconds) == (300.0, 1800.0)
    assert (before.satisfaction.csat.n, before.satisfaction.csat.mean, before.satisfaction.csat.satisfied_pct) == (
        2, 3.0, 50.0)
    assert (before.orders.customers, before.orders.orders) == (0, 0)
    assert [(i.intent, i.replies, i.share_pct, i.containment_pct) for i in summary.top_intents] == [
        ("order_status", 1, 100.0, 100.0)]
    assert [(t.name, t.opened, t.resolved, t.open_now) for t in summary.teams] == [
        (CARE, 1, 1, 1), ("No team", 0, 0, 1), (AFTER_SALES, 0, 0, 1)]


async def test_a_bad_range_is_refused(crm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="ends before it starts"):
        await crm.kpis.containment(start=END, end=START)
    with pytest.raises(ValueError, match="at most 731 days"):
        await crm.kpis.tickets(start=date(2022, 1, 1), end=date(2024, 1, 2))
    with pytest.raises(ValueError):
        await crm.kpis.satisfaction(start=START, end=END, granularity="year")
    with pytest.raises(ValueError, match="Dates run from 1970-01-01 to 9998-12-31"):
        await crm.kpis.retention(start=date(1969, 12, 31), end=date(1970, 1, 2))
    two_years = await crm.kpis.containment(start=date(2022, 1, 1), end=date(2024, 1, 1), granularity="day")
    assert len(two_years.rows) == 731 and two_years.total.conversations == 0


@pytest.mark.parametrize(("granularity", "day", "first", "label"), [
    ("day", date(2024, 2, 29), date(2024, 2, 29), "2024-02-29"),
    ("week", date(2024, 1, 1), date(2024, 1, 1), "2024-W01"),
    ("week", date(2021, 1, 3), date(2020, 12, 28), "2020-W53"),  # a Sunday in the last ISO week of 2020
    ("week", date(1970, 1, 1), date(1969, 12, 29), "1970-W01"),
    ("month", date(2024, 12, 31), date(2024, 12, 1), "2024-12"),
])
def test_periods_are_numbered_and_labelled(granularity, day, first, label) -> None:  # type: ignore[no-untyped-def]
    periods = Periods(granularity, day, day)
    n = periods.number(day)
    assert periods.first_day(n) == first and periods.period(n).label == label
    assert periods.first_day(n + 1) > day >= periods.first_day(n)
