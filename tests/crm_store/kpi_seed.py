"""A hand-made data set for the Reports section's KPIs (crm_store/services/kpis.py). The range the tests use is
2024-01-01..2024-03-31 (January to March; 2024 is a leap year, 01-01 a Monday); rows just outside it, on both
sides, must not count. tests/crm_store/test_report_kpis.py works every number out from the tables below.

Customers A B C D E. Orders (placed at; status; counted = paid/shipped/completed):
  A  01-05 10:00 paid     01-20 10:00 shipped    02-10 10:00 completed   03-15 10:00 refunded (not counted)
  B  01-10 10:00 paid     03-05 10:00 paid
  C  02-01 00:00 paid     02-28 10:00 cancelled (not counted)   03-31 23:59:59 completed
  D  2023-12-31 23:59:59 paid (outside)   01-31 23:59:59.999999 paid
  E  02-15 10:00 pending (not counted)    04-01 00:00 paid (outside)

Conversations (created at; customer message?; tickets; bot replies by intent):
  K11 2023-12-20 10:00  yes  X7 X8         -                      (outside)
  K0  2023-12-31 23:59:59 yes  -           order_status           (outside)
  K1  01-03 09:00       yes  -             order_status x2, greet (and a customer message with intent greet)
  K2  01-10 09:30       yes  X1            order_status, human_handoff
  K3  01-20 12:00       no   -             one reply without an intent (a survey)
  K4  02-01 00:00       yes  -             faq
  K5  02-29 23:59:59.999999 yes -          faq, greet
  K6  02-05 08:50       yes  X2            faq
  K7  03-01 00:00       yes  X3 X9         refund
  K8  03-10 11:00       yes  X4 X5         -
  K9  03-31 23:59:59.999999 yes -          order_status
  K10 2024-04-01 00:00  yes  X6            faq                    (outside)

Teams: Care, 售后 (after-sales). Agents: Ann, Bob, Cat (active, nothing done), Dan (inactive, nothing done),
Eve (inactive, one reply in February).

Tickets (created at; team; assignee; category or handoff reason; first response after; resolved after; status):
  X1 K2  01-10 10:00    Care  Ann  orders            10 min   60 min  resolved
  X2 K6  02-05 09:00    售后  Bob  - (no_answer)     30 min  120 min  closed
  X3 K7  03-01 00:00    Care  Ann  orders            20 min     -     open
  X4 K8  03-10 12:00    -     -    - (complaint)       -        -     new
  X5 K8  03-20 08:00    售后  Ann  refunds            5 min   30 min  resolved
  X9 K7  03-25 14:00    Care  Bob  orders            40 min  240 min  resolved
  X6 K10 04-01 00:00    Care  Bob  shipping           1 min    2 min  resolved (outside)
  X7 K11 2023-12-20 10:00 Care Bob orders            15 min  resolved 2024-01-02 10:00 (opened outside)
  X8 K11 2023-12-28 10:00 售后 -   refunds             -        -     pending (opened outside)

Agent replies (public unless said): Ann 01-10 10:10 (K2), 03-01 00:20 (K7), 03-01 00:30 private note (K7),
03-20 08:05 (K8); Bob 02-05 09:30 (K6), 03-25 14:40 (K7), 04-01 00:01 (K10, outside); Eve 02-05 09:40 (K6).

CSAT answers (answered at; score; agent): 2023-12-31 23:59:59 1 - (outside); 01-10 12:00 5 Ann (sent 2023-12-30);
01-15 09:00 4 -; 02-05 12:00 3 Bob; 03-20 09:00 4 Ann; 03-21 09:00 2 Ann; 03-26 10:00 5 Bob;
04-01 00:00 1 Bob (sent 03-30, outside); sent 02-01 to Ann's customer, never answered.
NPS answers: 2023-12-31 23:59:59 0 (outside); 01-07 23:59:59 6; 01-08 00:00 9; 01-31 23:59:59.999999 10;
02-10 7; 02-11 8; 02-12 0; 02-13 3; 04-01 00:00 10 (outside).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from crm_store import models as m

START, END = date(2024, 1, 1), date(2024, 3, 31)
MINUTE = timedelta(minutes=1)
LAST_INSTANT = timedelta(days=1) - timedelta(microseconds=1)  # a day's 23:59:59.999999, from its midnight
CARE, AFTER_SALES = "Care", "售后"


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


async def seed_kpis(db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Writes the data set described above (into an empty database); returns the agents' ids by name."""
    async with db.sessionmaker() as session:
        teams = {name: m.Team(name=name) for name in (CARE, AFTER_SALES)}
        session.add_all(teams.values())
        agents = {name: m.Agent(email=f"{name.lower()}@kpi.test", name=name, password_hash="-", active=active)
                  for name, active in (("Ann", True), ("Bob", True), ("Cat", True), ("Dan", False), ("Eve", False))}
        session.add_all(agents.values())
        customers = {key: m.Customer(name=f"Customer {key}") for key in "ABCDE"}
        session.add_all(customers.values())
        await session.flush()

        for n, (key, placed, status) in enumerate((
            ("A", at(1, 5, 10), "paid"), ("A", at(1, 20, 10), "shipped"), ("A", at(2, 10, 10), "completed"),
            ("A", at(3, 15, 10), "refunded"), ("B", at(1, 10, 10), "paid"), ("B", at(3, 5, 10), "paid"),
            ("C", at(2, 1), "paid"), ("C", at(2, 28, 10), "cancelled"), ("C", at(3, 31, 23, 59, 59), "completed"),
            ("D", at(12, 31, 23, 59, 59, year=2023), "paid"), ("D", at(1, 31) + LAST_INSTANT, "paid"),
            ("E", at(2, 15, 10), "pending"), ("E", at(4, 1), "paid"),
        )):
            session.add(m.Order(customer_id=customers[key].id, external_ref=f"KPI-{n}", amount=Decimal("10.00"),
                                placed_at=placed, status=status))

        someone = customers["A"].id
        chats: dict[str, m.Conversation] = {}
        for key, created in (
            ("K11", at(12, 20, 10, year=2023)), ("K0", at(12, 31, 23, 59, 59, year=2023)), ("K1", at(1, 3, 9)),
            ("K2", at(1, 10, 9, 30)), ("K3", at(1, 20, 12)), ("K4", at(2, 1)), ("K5", at(2, 29) + LAST_INSTANT),
            ("K6", at(2, 5, 8, 50)), ("K7", at(3, 1)), ("K8", at(3, 10, 11)), ("K9", at(3, 31) + LAST_INSTANT),
            ("K10", at(4, 1)),
        ):
            chats[key] = m.Conversation(customer_id=someone, created_at=created)
        session.add_all(chats.values())
        await session.flush()

        def message(chat: str, sender: str, *, intent: str | None = None, when: datetime | None = None,
                    agent: str | None = None, private: bool = False) -> m.Message:
            return m.Message(conversation_id=chats[chat].id, sender=sender, text="…",
                             direction="incoming" if sender == "customer" else "outgoing", intent=intent,
                             agent_id=agents[agent].id if agent else None, is_private=private,
                             created_at=when or chats[chat].created_at)

        for chat in ("K11", "K0", "K1", "K2", "K4", "K5", "K6", "K7", "K8", "K9", "K10"):
            session.add(message(chat, "customer", intent="greet" if chat == "K1" else None))
        for chat, intent in (
            ("K0", "order_status"), ("K1", "order_status"), ("K1", "order_status"), ("K1", "greet"),
            ("K2", "order_status"), ("K2", "human_handoff"), ("K3", None), ("K4", "faq"), ("K5", "faq"),
            ("K5", "greet"), ("K6", "faq"), ("K7", "refund"), ("K9", "order_status"), ("K10", "faq"),
        ):
            session.add(message(chat, "bot", intent=intent))
        for chat, agent, when, private in (
            ("K2", "Ann", at(1, 10, 10, 10), False), ("K7", "Ann", at(3, 1, 0, 20), False),
            ("K7", "Ann", at(3, 1, 0, 30), True), ("K8", "Ann", at(3, 20, 8, 5), False),
            ("K6", "Bob", at(2, 5, 9, 30), False), ("K7", "Bob", at(3, 25, 14, 40), False),
            ("K10", "Bob", at(4, 1, 0, 1), False), ("K6", "Eve", at(2, 5, 9, 40), False),
        ):
            session.add(message(chat, "agent", agent=agent, when=when, private=private))

        tickets: dict[str, m.Ticket] = {}
        for key, chat, created, team, assignee, category, reason, first, resolved, status in (
            ("X1", "K2", at(1, 10, 10), CARE, "Ann", "orders", "customer_asked", 10 * MINUTE, 60 * MINUTE,
             "resolved"),
            ("X2", "K6", at(2, 5, 9), AFTER_SALES, "Bob", None, "no_answer", 30 * MINUTE, 120 * MINUTE, "closed"),
            ("X3", "K7", at(3, 1), CARE, "Ann", "orders", "customer_asked", 20 * MINUTE, None, "open"),
            ("X4", "K8", at(3, 10, 12), None, None, None, "complaint", None, None, "new"),
            ("X5", "K8", at(3, 20, 8), AFTER_SALES, "Ann", "refunds", "customer_asked", 5 * MINUTE, 30 * MINUTE,
             "resolved"),
            ("X9", "K7", at(3, 25, 14), CARE, "Bob", "orders", "no_answer", 40 * MINUTE, 240 * MINUTE, "resolved"),
            ("X6", "K10", at(4, 1), CARE, "Bob", "shipping", "customer_asked", MINUTE, 2 * MINUTE, "resolved"),
            ("X7", "K11", at(12, 20, 10, year=2023), CARE, "Bob", "orders", "customer_asked", 15 * MINUTE,
             at(1, 2, 10) - at(12, 20, 10, year=2023), "resolved"),
            ("X8", "K11", at(12, 28, 10, year=2023), AFTER_SALES, None, "refunds", "complaint", None, None,
             "pending"),
        ):
            tickets[key] = m.Ticket(
                conversation_id=chats[chat].id, customer_id=someone, created_at=created, category=category,
                team_id=teams[team].id if team else None, assignee_id=agents[assignee].id if assignee else None,
                context={"reason": reason}, status=status, first_response_at=created + first if first else None,
                resolved_at=created + resolved if resolved else None)
        session.add_all(tickets.values())

        csat = m.Survey(key="csat", kind="csat", title="CSAT")
        nps = m.Survey(key="nps", kind="nps", title="NPS")
        session.add_all([csat, nps])
        await session.flush()
        for n, (survey, score, answered, agent, sent) in enumerate((
            (csat, 1, at(12, 31, 23, 59, 59, year=2023), None, None), (csat, 5, at(1, 10, 12), "Ann",
                                                                        at(12, 30, year=2023)),
            (csat, 4, at(1, 15, 9), None, None), (csat, 3, at(2, 5, 12), "Bob", None),
            (csat, 4, at(3, 20, 9), "Ann", None), (csat, 2, at(3, 21, 9), "Ann", None),
            (csat, 5, at(3, 26, 10), "Bob", None), (csat, 1, at(4, 1), "Bob", at(3, 30)),
            (csat, None, None, "Ann", at(2, 1)),
            (nps, 0, at(12, 31, 23, 59, 59, year=2023), None, None), (nps, 6, at(1, 7, 23, 59, 59), None, None),
            (nps, 9, at(1, 8), None, None), (nps, 10, at(1, 31) + LAST_INSTANT, None, None),
            (nps, 7, at(2, 10), None, None), (nps, 8, at(2, 11), None, None), (nps, 0, at(2, 12), None, None),
            (nps, 3, at(2, 13), None, None), (nps, 10, at(4, 1), None, None),
        )):
            session.add(m.SurveyInvitation(
                survey_id=survey.id, customer_id=someone, agent_id=agents[agent].id if agent else None, score=score,
                answered_at=answered, sent_at=sent or (answered - timedelta(hours=1)), dedupe_key=f"kpi-{n}"))
        await session.commit()
        return {name: agent.id for name, agent in agents.items()}
