"""The dashboard's reports on a small hand-computed data set (tests/crm_store/report_seed.py), on every channel
and on each one, at the edges of the range; the percentile and question-grouping helpers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm_store.services.reports import normalised_question, percentile_cont
from tests.crm_store.report_seed import END, EXPECTED, START, seed_reports


@pytest.mark.parametrize("channel", [None, "telegram", "webchat"])
async def test_every_kpi_matches_the_hand_computed_numbers(crm, db, channel) -> None:  # type: ignore[no-untyped-def]
    await seed_reports(db)
    want = EXPECTED[channel]
    report = await crm.reports.dashboard(start=START, end=END, channel=channel)

    assert report.days == want.days
    assert (report.conversations, report.engaged, report.handed_off) == (
        want.conversations, want.engaged, want.handed_off)
    assert report.contained == want.engaged - want.handed_off
    assert report.containment_pct == pytest.approx(100 * report.contained / want.engaged)
    assert report.containment_pct + report.handoff_pct == pytest.approx(100)
    frt, resolution = report.first_response, report.resolution
    assert (frt.n, frt.median_seconds, frt.p90_seconds) == want.frt
    assert (resolution.n, resolution.median_seconds, resolution.p90_seconds) == want.resolution
    assert report.csat.by_score == want.csat
    assert report.csat.mean == pytest.approx(want.csat_mean)
    assert report.csat.satisfied_pct == pytest.approx(want.csat_satisfied_pct)
    assert report.nps.by_score == want.nps
    assert report.nps.score == pytest.approx(want.nps_score)
    assert [(i.intent, i.count) for i in report.top_intents] == want.intents
    assert report.bot_replies_with_intent == want.with_intent
    assert [(q.text, q.count, q.last_asked_at) for q in report.unanswered] == want.unanswered


async def test_the_headline_numbers_on_all_channels(crm, db) -> None:  # type: ignore[no-untyped-def]
    """The same numbers written out, as a person reads them off the dashboard."""
    await seed_reports(db)
    report = await crm.reports.dashboard(start=START, end=END)
    assert (report.containment_pct, report.handoff_pct) == (60.0, 40.0)
    assert (report.first_response.median_minutes, report.first_response.p90_minutes) == (3.0, 8.2)
    assert (report.resolution.median_minutes, report.resolution.p90_minutes) == (60.0, 108.0)
    assert (report.csat.n, report.csat.mean, report.csat.satisfied, report.csat.satisfied_pct) == (5, 3.8, 3, 60.0)
    nps = report.nps
    assert (nps.n, nps.promoters, nps.passives, nps.detractors, nps.score) == (5, 3, 1, 1, 40.0)


async def test_a_narrower_range_and_an_empty_one(crm, db) -> None:  # type: ignore[no-untyped-def]
    await seed_reports(db)
    first_day = await crm.reports.dashboard(start=START, end=START)
    assert [(d.conversations, d.engaged, d.handed_off) for d in first_day.days] == [(3, 2, 1)]
    assert (first_day.first_response.n, first_day.first_response.median_seconds) == (2, 360.0)
    assert [(q.text, q.count) for q in first_day.unanswered] == [("Do you ship to Mars?", 1)]

    empty = await crm.reports.dashboard(start=START - timedelta(days=30), end=START - timedelta(days=10))
    assert len(empty.days) == 21 and empty.conversations == 0
    assert empty.containment_pct is None and empty.handoff_pct is None
    assert (empty.first_response.n, empty.first_response.median_seconds, empty.first_response.p90_minutes) == (
        0, None, None)
    assert empty.csat.mean is None and empty.nps.score is None and empty.csat.n == 0
    assert empty.top_intents == () and empty.unanswered == ()


async def test_weak_suggestions_follow_the_setting(crm, db) -> None:  # type: ignore[no-untyped-def]
    await seed_reports(db)
    crm.reports.settings = crm.settings.model_copy(update={"report_weak_suggestion_below": 0.6})
    report = await crm.reports.dashboard(start=START, end=END, channel="webchat")
    assert sorted((q.text, q.count) for q in report.unanswered) == [
        ("<script>alert(1)</script> refund?", 1), ("Is tea vegan?", 1)]


async def test_a_bad_range_is_refused(crm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="ends before"):
        await crm.reports.dashboard(start=END, end=START)
    with pytest.raises(ValueError, match="at most"):
        await crm.reports.dashboard(start=START - timedelta(days=400), end=START)


def test_percentiles_interpolate_as_postgresql_does() -> None:
    assert percentile_cont([], 0.5) is None
    assert percentile_cont([7.0], 0.9) == 7.0
    assert percentile_cont([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile_cont([10.0, 20.0, 30.0, 40.0, 50.0], 0.9) == pytest.approx(46.0)


def test_questions_are_grouped_by_normalised_text() -> None:
    assert normalised_question("  Do you   ship to MARS?? ") == "do you ship to mars"
    assert normalised_question("能退货吗？") == "能退货吗"
    assert normalised_question("?!") == ""
