"""Agents and teams: created by admins (or `kefu agent create`), passwords stored as argon2 hashes."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from crm_store import models as m
from crm_store.dto import AgentView
from crm_store.enums import AgentRole
from crm_store.errors import ConflictError
from crm_store.services.base import Service

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class AgentService(Service):
    async def create_team(self, *, name: str, description: str = "") -> int:
        async with self.uow() as uow:
            existing = (await uow.session.execute(select(m.Team).where(m.Team.name == name))).scalar_one_or_none()
            if existing is not None:
                return existing.id
            team = m.Team(name=name, description=description)
            uow.session.add(team)
            await uow.commit()
            return team.id

    async def create_agent(
        self, *, email: str, name: str, password: str, role: AgentRole | str = AgentRole.AGENT,
        team_id: int | None = None, language: str = "en",
    ) -> AgentView:
        """A new agent; the e-mail must be free (compared without case)."""
        email = email.strip().lower()
        if "@" not in email:
            raise ValueError(f"Not an e-mail address: {email!r}.")
        async with self.uow() as uow:
            taken = await uow.session.scalar(select(func.count()).where(func.lower(m.Agent.email) == email))
            if taken:
                raise ConflictError(f"An agent with e-mail {email} exists already.")
            agent = m.Agent(email=email, name=name or email, role=AgentRole(role), team_id=team_id,
                            password_hash=hash_password(password), language=language)
            uow.session.add(agent)
            await uow.commit()
            return AgentView.of(agent)

    async def authenticate(self, *, email: str, password: str) -> AgentView | None:
        """The active agent with these credentials, or None (the same answer for a wrong e-mail or password)."""
        async with self.uow() as uow:
            agent = (await uow.session.execute(
                select(m.Agent).where(func.lower(m.Agent.email) == email.strip().lower())
            )).scalar_one_or_none()
            if agent is None:
                _hasher.hash("timing equaliser")  # costs as much as a real check
                return None
            if not agent.active or not verify_password(agent.password_hash, password):
                return None
            return AgentView.of(agent)

    async def list_agents(self) -> list[AgentView]:
        async with self.uow() as uow:
            rows = await uow.session.execute(select(m.Agent).order_by(m.Agent.id))
            return [AgentView.of(a) for a in rows.scalars()]
