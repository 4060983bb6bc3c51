"""Automatic assignment of new tickets: round robin or least loaded, as the admin's setting says.

Choosing and assigning happen in one transaction that locks every candidate agent's row (in id order, so two
choosers never deadlock): a second ticket's choice waits for the first to commit and then sees its assignment, so
two tickets at once never both go to the same "oldest" agent. SQLite takes its write lock at BEGIN instead."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select

from crm_store import models as m
from crm_store.dto import TicketView
from crm_store.enums import AgentRole
from crm_store.events import DomainEvent, HandoffRequested
from crm_store.services.base import Service
from crm_store.services.conversations import ACTIVE_TICKET, assign_in
from crm_store.uow import UnitOfWork

log = logging.getLogger(__name__)

STRATEGY_KEY = "assignment.strategy"
OFF, ROUND_ROBIN, LEAST_LOADED = "off", "round_robin", "least_loaded"
STRATEGIES = (OFF, ROUND_ROBIN, LEAST_LOADED)
# Roles that take tickets from the queue (admins assign, they are not assigned).
ASSIGNABLE_ROLES = (AgentRole.AGENT, AgentRole.SUPERVISOR)


class AssignmentService(Service):
    async def assign_automatically(self, *, ticket_id: int, strategy: str) -> TicketView | None:
        """Give an unassigned, active ticket to the next agent by `strategy` (in the ticket's team when it has
        one, else anyone); None when nothing was assigned (already assigned, no longer active, nobody to take it,
        or the strategy is off)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown assignment strategy {strategy!r}: one of {', '.join(STRATEGIES)}.")
        if strategy == OFF:
            return None
        async with self.uow() as uow:
            ticket = (await uow.session.execute(
                select(m.Ticket).where(m.Ticket.id == ticket_id).with_for_update()
            )).scalar_one_or_none()
            if ticket is None or ticket.assignee_id is not None or ticket.status not in ACTIVE_TICKET:
                return None
            agent = await _next_agent(uow, strategy, team_id=ticket.team_id)
            if agent is None:
                return None
            await assign_in(uow, ticket, agent, by_agent_id=None)
            await uow.commit()
            return TicketView.of(ticket)

    async def strategy(self) -> str:
        """The admin's choice (setting "assignment.strategy"); off when unset or not understood."""
        async with self.uow() as uow:
            value = await uow.session.scalar(select(m.AppSetting.value).where(m.AppSetting.key == STRATEGY_KEY))
        if value is None:
            return OFF
        if value not in STRATEGIES:
            log.warning("ignoring the assignment strategy %r: not one of %s", value, STRATEGIES)
            return OFF
        return str(value)

    async def on_event(self, event: DomainEvent) -> None:
        """Bus handler: a handoff's new ticket goes to an agent by the configured strategy."""
        if not isinstance(event, HandoffRequested):
            return
        strategy = await self.strategy()
        if strategy != OFF:
            await self.assign_automatically(ticket_id=event.ticket_id, strategy=strategy)


async def _next_agent(uow: UnitOfWork, strategy: str, *, team_id: int | None) -> m.Agent | None:
    """The candidate the strategy picks, with every candidate's row locked until the transaction ends."""
    conditions: list[Any] = [m.Agent.active.is_(True), m.Agent.role.in_(ASSIGNABLE_ROLES)]
    if team_id is not None:
        conditions.append(m.Agent.team_id == team_id)
    # populate_existing: a row locked after waiting is read as the other transaction committed it.
    candidates = list((await uow.session.execute(
        select(m.Agent).where(*conditions).order_by(m.Agent.id).with_for_update()
        .execution_options(populate_existing=True)
    )).scalars())
    if not candidates:
        return None

    def turn(agent: m.Agent) -> tuple[bool, Any, int]:  # never assigned first, then the longest ago
        return (agent.last_assigned_at is not None, agent.last_assigned_at or 0, agent.id)

    if strategy == ROUND_ROBIN:
        return min(candidates, key=turn)
    # A new statement after the locks: it sees the tickets the previous chooser assigned.
    loads: dict[int, int] = {agent_id: count for agent_id, count in (await uow.session.execute(
        select(m.Ticket.assignee_id, func.count())
        .where(m.Ticket.assignee_id.in_([a.id for a in candidates]), m.Ticket.status.in_(ACTIVE_TICKET))
        .group_by(m.Ticket.assignee_id)
    )).all()}
    return min(candidates, key=lambda a: (loads.get(a.id, 0), *turn(a)))

