"""A small data set for the reports, every number of which is worked out by hand in EXPECTED (the range is
2024-03-01..2024-03-03; rows just outside it, on both sides, must not count).

Conversations (created; channel; customer messages; tickets):
  C1 tg 03-01 23:59:59.999999  engaged, no ticket       contained
  C2 tg 03-01 08:00            engaged, tickets Ta, Tb   handed off
  C3 wc 03-01 10:00            a pushed survey only      not engaged
  C4 wc 03-02 00:00:00         engaged, tickets Tc, Td, Te (and one created 03-04)   handed off
  C5 tg 03-03 12:00            engaged, no ticket       contained
  C6 wc 03-03 13:00            engaged, no ticket       contained
  C7 tg 02-29 23:59:59         outside (with a ticket, a miss);  C8 wc 03-04 00:00 outside (a miss)

Tickets created in the range (first response after, resolved after), in seconds:
  Ta tg 120 / 3600   Tb tg 600 / 1800   Tc wc 240 / -   Td wc - / -   Te wc 30 / 7200
  FRT all [30, 120, 240, 600]: median 180, p90 = 240 + 0.7 * 360 = 492; resolution [1800, 3600, 7200]:
  median 3600, p90 = 3600 + 0.8 * 3600 = 6480.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_store import models as m
from crm_store.dto import DayVolume

D1 = datetime(2024, 3, 1, tzinfo=UTC)
START, END = D1.date(), (D1 + timedelta(days=2)).date()
S = timedelta(seconds=1)


@dataclass(frozen=True)
class Expected:
    days: tuple[DayVolume, ...]
    conversations: int
    engaged: int
    handed_off: int
    frt: tuple[int, float | None, float | None]  # n, median s, p90 s
    resolution: tuple[int, float | None, float | None]
    csat: dict[int, int]
    csat_mean: float | None
    csat_satisfied_pct: float | None
    nps: dict[int, int]
    nps_score: float | None
    intents: list[tuple[str, int]]
    with_intent: int
    unanswered: list[tuple[str, int, datetime]]


MARS_LATEST = "do you ship  to MARS"
SCRIPT_QUESTION = "<script>alert(1)</script> refund?"

EXPECTED = {
    None: Expected(
        days=(DayVolume(START, 3, 2, 1), DayVolume(START + timedelta(days=1), 1, 1, 1),
              DayVolume(END, 2, 2, 0)),
        conversations=6, engaged=5, handed_off=2,
        frt=(4, 180.0, 492.0), resolution=(3, 3600.0, 6480.0),
        csat={2: 1, 3: 1, 4: 1, 5: 2}, csat_mean=3.8, csat_satisfied_pct=60.0,
        nps={6: 1, 8: 1, 9: 2, 10: 1}, nps_score=40.0,
        intents=[("faq", 4), ("order_status", 2), ("greet", 1), ("human_handoff", 1)], with_intent=8,
        unanswered=[(MARS_LATEST, 2, D1 + timedelta(days=2, hours=12)),
                    (SCRIPT_QUESTION, 1, D1 + timedelta(days=2, hours=13))],
    ),
    "telegram": Expected(
        days=(DayVolume(START, 2, 2, 1), DayVolume(START + timedelta(days=1), 0, 0, 0), DayVolume(END, 1, 1, 0)),
        conversations=3, engaged=3, handed_off=1,
        frt=(2, 360.0, 552.0), resolution=(2, 2700.0, 3420.0),
        csat={3: 1, 4: 1, 5: 1}, csat_mean=4.0, csat_satisfied_pct=200 / 3,
        nps={6: 1, 9: 1, 10: 1}, nps_score=100 / 3,
        intents=[("faq", 2), ("greet", 1), ("human_handoff", 1)], with_intent=4,
        unanswered=[(MARS_LATEST, 2, D1 + timedelta(days=2, hours=12))],
    ),
    "webchat": Expected(
        days=(DayVolume(START, 1, 0, 0), DayVolume(START + timedelta(days=1), 1, 1, 1), DayVolume(END, 1, 1, 0)),
        conversations=3, engaged=2, handed_off=1,
        frt=(2, 135.0, 219.0), resolution=(1, 7200.0, 7200.0),
        csat={2: 1, 5: 1}, csat_mean=3.5, csat_satisfied_pct=50.0,
        nps={8: 1, 9: 1}, nps_score=50.0,
        intents=[("faq", 2), ("order_status", 2)], with_intent=4,
        unanswered=[(SCRIPT_QUESTION, 1, D1 + timedelta(days=2, hours=13))],
    ),
}


def _msg(conversation: m.Conversation, at: datetime, sender: str, text: str = "", *, decision: str | None = None,
         intent: str | None = None, confidence: float | None = None, button: str | None = None) -> m.Message:
    payload: dict[str, Any] = {}
    if decision:
        payload["decision"] = decision
    if button:
        payload["button"] = button
    direction = "incoming" if sender == "customer" else "outgoing"
    return m.Message(conversation_id=conversation.id, direction=direction, sender=sender, text=text, payload=payload,
                     intent=intent, confidence=confidence, created_at=at)


async def seed_reports(db) -> None:  # type: ignore[no-untyped-def]
    """Writes the data set described above (into an empty database)."""
    async with db.sessionmaker() as session:
        customer = m.Customer(name="Report Customer")
        session.add(customer)
        await session.flush()
        conversations: dict[str, m.Conversation] = {}
        for key, channel, created in (
            ("C1", "telegram", D1 + timedelta(days=1) - timedelta(microseconds=1)),
            ("C2", "telegram", D1 + timedelta(hours=8)), ("C3", "webchat", D1 + timedelta(hours=10)),
            ("C4", "webchat", D1 + timedelta(days=1)), ("C5", "telegram", D1 + timedelta(days=2, hours=12)),
            ("C6", "webchat", D1 + timedelta(days=2, hours=13)), ("C7", "telegram", D1 - S),
            ("C8", "webchat", D1 + timedelta(days=3)),
        ):
            identity = m.ChannelIdentity(customer_id=customer.id, channel=channel, external_id=key)
            session.add(identity)
            await session.flush()
            conversation = m.Conversation(customer_id=customer.id, identity_id=identity.id, created_at=created)
            conversations[key] = conversation
            session.add(conversation)
            await session.flush()
        c = conversations
        t1, t4 = c["C1"].created_at, c["C4"].created_at
        t5, t6 = c["C5"].created_at, c["C6"].created_at
        messages = [
            _msg(c["C1"], t1, "customer", "Do you ship to Mars?"),
            _msg(c["C1"], t1, "bot", "Sorry", decision="no_answer", intent="faq", confidence=0.2),
            _msg(c["C2"], c["C2"].created_at, "customer", "I want a human"),
            _msg(c["C2"], c["C2"].created_at + S, "bot", "Handing over", decision="handoff", intent="human_handoff"),
            _msg(c["C3"], c["C3"].created_at, "bot", "How did we do?", decision="flow"),
            _msg(c["C4"], t4, "customer", "Where is my order"),
            _msg(c["C4"], t4 + S, "bot", "Here", decision="answer", intent="order_status", confidence=0.9),
            _msg(c["C4"], t4 + 2 * S, "agent", "Hello, Ann here"),
            _msg(c["C5"], t5, "customer", MARS_LATEST),
            _msg(c["C5"], t5 + S, "bot", "Sorry", decision="no_answer", intent="faq", confidence=0.1),
            _msg(c["C5"], t5 + 2 * S, "customer", "Hello"),
            _msg(c["C5"], t5 + 3 * S, "bot", "Hi!", decision="flow", intent="greet", confidence=0.99),
            _msg(c["C5"], t5 + 4 * S, "customer", "None of these", button="kb:none"),
            _msg(c["C5"], t5 + 5 * S, "bot", "Sorry", decision="no_answer"),
            _msg(c["C6"], t6, "customer", SCRIPT_QUESTION),
            _msg(c["C6"], t6 + S, "bot", "Did you mean", decision="suggest", intent="faq", confidence=0.2),
            _msg(c["C6"], t6 + 2 * S, "customer", "Is tea vegan?"),
            _msg(c["C6"], t6 + 3 * S, "bot", "Did you mean", decision="suggest", intent="faq", confidence=0.5),
            _msg(c["C6"], t6 + 4 * S, "customer", "Where is my order?"),
            _msg(c["C6"], t6 + 5 * S, "bot", "Here", decision="answer", intent="order_status", confidence=0.8),
            _msg(c["C7"], c["C7"].created_at, "customer", "Do you ship to Mars?"),
            _msg(c["C7"], c["C7"].created_at, "bot", "Sorry", decision="no_answer", intent="faq", confidence=0.1),
            _msg(c["C8"], c["C8"].created_at, "customer", "Do you ship to Mars?"),
            _msg(c["C8"], c["C8"].created_at + S, "bot", "Sorry", decision="no_answer", intent="faq"),
        ]
        for message in messages:  # one by one: a bot reply's question is the customer message with the id before
            session.add(message)
            await session.flush()
        minute = timedelta(minutes=1)
        for key, created, first, resolved in (
            ("C2", D1 + timedelta(hours=12), 2 * minute, 60 * minute),
            ("C2", D1 + timedelta(hours=13), 10 * minute, 30 * minute),
            ("C4", D1 + timedelta(days=1, hours=8), 4 * minute, None),
            ("C4", D1 + timedelta(days=2, hours=23), None, None),
            ("C4", D1 + timedelta(days=1, hours=9), 30 * S, 120 * minute),
            ("C4", D1 + timedelta(days=3), 100 * minute, None),
            ("C7", D1 - timedelta(hours=12), minute, 5 * minute),
        ):
            session.add(m.Ticket(conversation_id=c[key].id, customer_id=customer.id, created_at=created,
                                 first_response_at=created + first if first else None,
                                 resolved_at=created + resolved if resolved else None))
        csat = m.Survey(key="csat", kind="csat", title="CSAT")
        nps = m.Survey(key="nps", kind="nps", title="NPS")
        session.add_all([csat, nps])
        await session.flush()
        day2 = D1 + timedelta(days=1)
        for n, (survey, channel, score, answered) in enumerate((
            (csat, "telegram", 5, D1), (csat, "telegram", 4, day2), (csat, "webchat", 2, day2),
            (csat, "webchat", 5, D1 + timedelta(days=3) - S), (csat, "telegram", 3, day2),
            (csat, "telegram", None, day2), (csat, "webchat", 1, D1 + timedelta(days=3)), (csat, "telegram", 5, D1 - S),
            (nps, "telegram", 10, day2), (nps, "telegram", 9, day2), (nps, "webchat", 9, day2),
            (nps, "webchat", 8, day2), (nps, "telegram", 6, day2), (nps, "telegram", 0, D1 + timedelta(days=3)),
            (csat, "telegram", 1, None),  # sent, never answered
        )):
            session.add(m.SurveyInvitation(survey_id=survey.id, customer_id=customer.id, channel=channel, score=score,
                                           answered_at=answered, dedupe_key=f"report-{n}", sent_at=D1 - S))
        await session.commit()
