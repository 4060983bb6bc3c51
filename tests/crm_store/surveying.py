"""Survey results to check by hand: invitations with known scores, agents, teams, weeks and comments, written
straight to the store (the chat flow that makes them is tested in test_surveys.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

from crm_store import models as m

_serial = itertools.count(1)


def at(day: str, hour: str = "09:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{hour}").replace(tzinfo=UTC)


async def seed_invitation(crm, *, survey_id: int, customer_id: int, score: int | None, sent_at: datetime,  # type: ignore[no-untyped-def]
                          agent_id: int | None = None, team_id: int | None = None, campaign: str | None = None,
                          comment: str | None = None, score_question: str = "rating",
                          comment_question: str = "comment") -> int:
    """One invitation (answered when `score` is given, with an optional comment); its id."""
    async with crm.db.sessionmaker() as session:
        invitation = m.SurveyInvitation(
            survey_id=survey_id, customer_id=customer_id, agent_id=agent_id, team_id=team_id, campaign=campaign,
            channel="telegram", external_id=str(customer_id), language="en", dedupe_key=f"seed:{next(_serial)}",
            status="sent" if score is None else "completed", score=score, sent_at=sent_at,
            answered_at=None if score is None else sent_at, completed_at=None if score is None else sent_at,
        )
        session.add(invitation)
        await session.flush()
        if score is not None:
            session.add(m.SurveyAnswer(invitation_id=invitation.id, question_id=score_question, value_int=score,
                                       created_at=sent_at))
        if comment is not None:
            session.add(m.SurveyAnswer(invitation_id=invitation.id, question_id=comment_question,
                                       value_text=comment, created_at=sent_at))
        await session.commit()
        return invitation.id


@dataclass(frozen=True)
class CsatSeed:
    survey_id: int
    agents: dict[str, int]
    teams: dict[str, int]
    customer_id: int


# (agent, team, score, sent at): Ann 5 4 2, Bob 5 5, Cy 1 3 4 and one unanswered; ISO weeks 2024-W10 and W11.
CSAT_ROWS = [
    ("Ann", "Care", 5, at("2024-03-04")), ("Ann", "Care", 4, at("2024-03-10", "23:59")),
    ("Ann", "Care", 2, at("2024-03-11", "00:01")), ("Bob", "Care", 5, at("2024-03-05")),
    ("Bob", "Care", 5, at("2024-03-12")), ("Cy", "Sales", 1, at("2024-03-13")), ("Cy", "Sales", 3, at("2024-03-14")),
    ("Cy", "Sales", 4, at("2024-03-17", "23:00")), ("Cy", "Sales", None, at("2024-03-06")),
]


async def seed_csat(crm, *, comments: dict[int, str] | None = None) -> CsatSeed:  # type: ignore[no-untyped-def]
    """The CSAT rows above; `comments` maps a row's index to its comment."""
    survey = await crm.surveys.get(key="csat")
    teams = {name: await crm.agents.create_team(name=f"{name} team") for name in ("Care", "Sales")}
    agents = {name: (await crm.agents.create_agent(email=f"{name.lower()}@seed.example", name=name,
                                                   password="correct horse", team_id=teams[team])).id
              for name, team in (("Ann", "Care"), ("Bob", "Care"), ("Cy", "Sales"))}
    customer = await crm.customers.create(name="Rita Rater", email="rita@example.com")
    for n, (agent, team, score, sent_at) in enumerate(CSAT_ROWS):
        await seed_invitation(crm, survey_id=survey.id, customer_id=customer.id, score=score, sent_at=sent_at,
                              agent_id=agents[agent], team_id=teams[team], comment=(comments or {}).get(n))
    return CsatSeed(survey.id, agents, teams, customer.id)


async def seed_nps(crm) -> int:  # type: ignore[no-untyped-def]
    """NPS: campaign q1 scores 10 9 8 7 6 0 10 (3 promoters, 2 passives, 2 detractors), q2 one 3; the survey id."""
    survey = await crm.surveys.get(key="nps")
    customer = await crm.customers.create(name="Nora Net", email="nora@example.com")
    for score in (10, 9, 8, 7, 6, 0, 10):
        await seed_invitation(crm, survey_id=survey.id, customer_id=customer.id, score=score, campaign="q1",
                              sent_at=at("2024-04-02"), score_question="score", comment_question="why")
    await seed_invitation(crm, survey_id=survey.id, customer_id=customer.id, score=3, campaign="q2",
                          sent_at=at("2024-05-02"), score_question="score", comment_question="why",
                          comment="Too slow")
    return survey.id
