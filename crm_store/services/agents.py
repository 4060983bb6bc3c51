"""Agents and teams (created by admins or `kefu agent create`, passwords stored as argon2 hashes), their console
sessions and the REST API's tokens. Session and API tokens are random, shown once, and stored as SHA-256 hashes."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import (
    AgentSessionView,
    AgentView,
    ApiTokenView,
    CreatedApiToken,
    StartedSession,
    TeamView,
)
from crm_store.enums import Actor, AgentRole, AuditAction
from crm_store.errors import ConflictError, NotFound
from crm_store.services.audit import audit_in
from crm_store.services.base import Service

# argon2id at argon2-cffi's defaults (RFC 9106's low-memory profile: 3 passes over 64 MiB).
PRODUCTION_HASHER = PasswordHasher()
_hasher = PRODUCTION_HASHER  # the test suite swaps in a cheaper one (tests/conftest.py)
MIN_PASSWORD_LENGTH = 8
# last_seen_at / last_used_at are written at most this often: reading a session must not be a write every time.
TOUCH_INTERVAL = timedelta(minutes=1)
# Revoked and expired sessions are kept this long (who signed in from where), then purged at the agent's next login.
SESSION_RETENTION = timedelta(days=30)
API_TOKEN_PREFIX = "kefu_"
SCOPE_PATTERN = re.compile(r"^[a-z_]+:[a-z_]+$")


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP  # "leave as it is" for arguments where None is a value (an agent's team)


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
        team_id: int | None = None, language: str = "en", by_agent_id: int | None = None,
    ) -> AgentView:
        """A new agent; the e-mail must be free (compared without case). Audited (by_agent_id None: the CLI)."""
        email = email.strip().lower()
        if "@" not in email:
            raise ValueError(f"Not an e-mail address: {email!r}.")
        async with self.uow() as uow:
            taken = await uow.session.scalar(select(func.count()).where(func.lower(m.Agent.email) == email))
            if taken:
                raise ConflictError(f"An agent with e-mail {email} exists already.")
            if team_id is not None:
                await self._team(uow.session, team_id)
            agent = m.Agent(email=email, name=name or email, role=AgentRole(role), team_id=team_id,
                            password_hash=hash_password(password), language=language)
            uow.session.add(agent)
            await uow.session.flush()
            audit_in(uow.session, action=AuditAction.AGENT_CREATED, **_by(by_agent_id), subject_type="agent",
                     subject_id=agent.id, details={"email": email, "role": str(agent.role), "team_id": team_id})
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

    async def get_agent(self, *, agent_id: int) -> AgentView:
        async with self.uow() as uow:
            return AgentView.of(await self._agent(uow.session, agent_id))

    async def update_agent(
        self, *, agent_id: int, role: AgentRole | str | None = None, team_id: int | _Keep | None = KEEP,
        active: bool | None = None, name: str | None = None, by_agent_id: int | None = None,
    ) -> AgentView:
        """Change what is given; deactivating an agent ends their sessions. Kefu keeps at least one active admin."""
        async with self.uow() as uow:
            agent = await self._agent(uow.session, agent_id, for_update=True)
            if team_id is not KEEP and team_id is not None:
                await self._team(uow.session, team_id)
            new_role = AgentRole(role) if role is not None else agent.role
            new_active = agent.active if active is None else active
            if agent.role == AgentRole.ADMIN and agent.active and (new_role != AgentRole.ADMIN or not new_active):
                others = await uow.session.scalar(select(func.count()).where(
                    m.Agent.role == AgentRole.ADMIN, m.Agent.active.is_(True), m.Agent.id != agent_id))
                if not others:
                    raise ConflictError("Kefu needs at least one active admin.")
            before = {"role": str(agent.role), "active": agent.active, "team_id": agent.team_id, "name": agent.name}
            agent.role = new_role
            agent.active = new_active
            if team_id is not KEEP:
                agent.team_id = team_id
            if name is not None:
                if not name.strip():
                    raise ValueError("A name cannot be empty.")
                agent.name = name.strip()
            after = {"role": str(agent.role), "active": agent.active, "team_id": agent.team_id, "name": agent.name}
            changes = {key: [before[key], after[key]] for key in before if before[key] != after[key]}
            if changes:
                audit_in(uow.session, action=AuditAction.AGENT_CHANGED, **_by(by_agent_id), subject_type="agent",
                         subject_id=agent_id, details=changes)
            if not new_active:
                await self._revoke_sessions(uow.session, agent_id)
            await uow.commit()
            return AgentView.of(agent)

    async def set_password(self, *, agent_id: int, password: str, by_agent_id: int | None = None) -> None:
        """A new password; every session of the agent ends (they sign in again with it)."""
        password_hash = hash_password(password)
        async with self.uow() as uow:
            agent = await self._agent(uow.session, agent_id, for_update=True)
            agent.password_hash = password_hash
            await self._revoke_sessions(uow.session, agent_id)
            audit_in(uow.session, action=AuditAction.PASSWORD_RESET, **_by(by_agent_id), subject_type="agent",
                     subject_id=agent_id)
            await uow.commit()

    # --- teams ----------------------------------------------------------------------------------------------

    async def list_teams(self) -> list[TeamView]:
        async with self.uow() as uow:
            members = (
                select(m.Agent.team_id, func.count().label("n")).where(m.Agent.active.is_(True))
                .group_by(m.Agent.team_id).subquery()
            )
            rows = await uow.session.execute(
                select(m.Team, func.coalesce(members.c.n, 0))
                .outerjoin(members, members.c.team_id == m.Team.id).order_by(m.Team.name)
            )
            return [TeamView(t.id, t.name, t.description, n) for t, n in rows]

    async def update_team(self, *, team_id: int, name: str | None = None,
                          description: str | None = None) -> TeamView:
        """Rename a team or change its description; team names are unique."""
        async with self.uow() as uow:
            team = await self._team(uow.session, team_id)
            if name is not None:
                name = name.strip()
                if not name:
                    raise ValueError("A team needs a name.")
                taken = await uow.session.scalar(
                    select(func.count()).where(m.Team.name == name, m.Team.id != team_id))
                if taken:
                    raise ConflictError(f"A team named {name} exists already.")
                team.name = name
            if description is not None:
                team.description = description.strip()
            await uow.commit()
            members = await uow.session.scalar(
                select(func.count()).where(m.Agent.team_id == team_id, m.Agent.active.is_(True)))
            return TeamView(team.id, team.name, team.description, members or 0)

    # --- console sessions -------------------------------------------------------------------------------------

    async def start_session(self, *, agent_id: int, ttl: timedelta, user_agent: str = "",
                            ip: str = "") -> StartedSession:
        """A new session for an active agent; the token is returned once (the store keeps its hash)."""
        if ttl <= timedelta(0):
            raise ValueError("A session needs a positive lifetime.")
        token = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.uow() as uow:
            agent = await self._agent(uow.session, agent_id)
            if not agent.active:
                raise ConflictError(f"Agent {agent.email} is deactivated.")
            await uow.session.execute(delete(m.AgentSession).where(
                m.AgentSession.agent_id == agent_id,
                (m.AgentSession.expires_at < now - SESSION_RETENTION)
                | (m.AgentSession.revoked_at < now - SESSION_RETENTION),
            ))
            row = m.AgentSession(
                token_hash=token_hash(token), agent_id=agent_id, csrf_token=secrets.token_urlsafe(32),
                created_at=now, last_seen_at=now, expires_at=now + ttl,
                user_agent=user_agent[:300], ip=ip[:64],
            )
            uow.session.add(row)
            await uow.commit()
            return StartedSession(token=token, csrf_token=row.csrf_token, expires_at=row.expires_at,
                                  agent=AgentView.of(agent))

    async def session(self, *, token: str) -> AgentSessionView | None:
        """The live session of this token (not ended, not expired, its agent active), or None."""
        if not token:
            return None
        now = utcnow()
        async with self.uow() as uow:
            row = (await uow.session.execute(
                select(m.AgentSession, m.Agent).join(m.Agent, m.Agent.id == m.AgentSession.agent_id).where(
                    m.AgentSession.token_hash == token_hash(token), m.AgentSession.revoked_at.is_(None),
                    m.AgentSession.expires_at > now, m.Agent.active.is_(True),
                )
            )).first()
            if row is None:
                return None
            session, agent = row
            if session.last_seen_at < now - TOUCH_INTERVAL:
                session.last_seen_at = now
                await uow.commit()
            return AgentSessionView(id=session.id, agent=AgentView.of(agent), csrf_token=session.csrf_token,
                                    created_at=session.created_at, last_seen_at=session.last_seen_at,
                                    expires_at=session.expires_at)

    async def end_session(self, *, token: str) -> None:
        """Sign out: the token stops working at once (ending an unknown or ended session does nothing)."""
        async with self.uow() as uow:
            await uow.session.execute(
                update(m.AgentSession)
                .where(m.AgentSession.token_hash == token_hash(token), m.AgentSession.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            await uow.commit()

    async def end_sessions(self, *, agent_id: int) -> int:
        """End every live session of an agent; how many were ended."""
        async with self.uow() as uow:
            ended = await self._revoke_sessions(uow.session, agent_id)
            await uow.commit()
            return ended

    # --- API tokens -----------------------------------------------------------------------------------------

    async def create_api_token(self, *, name: str, scopes: Sequence[str], created_by_agent_id: int | None,
                               expires_at: datetime | None = None) -> CreatedApiToken:
        """A new token for the REST API; the plaintext is returned this once."""
        name = name.strip()
        if not name:
            raise ValueError("A token needs a name.")
        bad = [s for s in scopes if not SCOPE_PATTERN.match(s)]
        if bad or not scopes:
            raise ValueError(f"Scopes look like resource:action; got {list(scopes)!r}.")
        if expires_at is not None and expires_at <= utcnow():
            raise ValueError("A token's expiry must be in the future.")
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.uow() as uow:
            row = m.ApiToken(name=name[:100], token_hash=token_hash(token), prefix=token[:12],
                             scopes=sorted(set(scopes)), created_by_agent_id=created_by_agent_id,
                             created_at=utcnow(), expires_at=expires_at)
            uow.session.add(row)
            await uow.session.flush()
            audit_in(uow.session, action=AuditAction.TOKEN_CREATED, **_by(created_by_agent_id),
                     subject_type="token", subject_id=row.id, details={"name": row.name, "scopes": row.scopes})
            await uow.commit()
            return CreatedApiToken(token=token, view=ApiTokenView.of(row))

    async def api_token(self, *, token: str) -> ApiTokenView | None:
        """The live token (not revoked, not expired), its use recorded; None for anything else."""
        if not token.startswith(API_TOKEN_PREFIX):
            return None
        now = utcnow()
        async with self.uow() as uow:
            row = (await uow.session.execute(select(m.ApiToken).where(
                m.ApiToken.token_hash == token_hash(token), m.ApiToken.revoked_at.is_(None),
                (m.ApiToken.expires_at.is_(None)) | (m.ApiToken.expires_at > now),
            ))).scalar_one_or_none()
            if row is None:
                return None
            if row.last_used_at is None or row.last_used_at < now - TOUCH_INTERVAL:
                row.last_used_at = now
                await uow.commit()
            return ApiTokenView.of(row)

    async def revoke_api_token(self, *, token_id: int, by_agent_id: int | None = None) -> ApiTokenView:
        async with self.uow() as uow:
            row = await uow.session.get(m.ApiToken, token_id, with_for_update=True)
            if row is None:
                raise NotFound(f"No API token {token_id}.")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                audit_in(uow.session, action=AuditAction.TOKEN_REVOKED, **_by(by_agent_id), subject_type="token",
                         subject_id=token_id, details={"name": row.name})
            await uow.commit()
            return ApiTokenView.of(row)

    async def list_api_tokens(self) -> list[ApiTokenView]:
        """Every token, newest first (revoked and expired ones too, for the record)."""
        async with self.uow() as uow:
            rows = await uow.session.execute(select(m.ApiToken).order_by(m.ApiToken.id.desc()))
            return [ApiTokenView.of(t) for t in rows.scalars()]

    # --- helpers --------------------------------------------------------------------------------------------

    @staticmethod
    async def _agent(session: AsyncSession, agent_id: int, *, for_update: bool = False) -> m.Agent:
        agent = await session.get(m.Agent, agent_id, with_for_update=for_update)
        if agent is None:
            raise NotFound(f"No agent {agent_id}.")
        return agent

    @staticmethod
    async def _team(session: AsyncSession, team_id: int) -> m.Team:
        team = await session.get(m.Team, team_id)
        if team is None:
            raise NotFound(f"No team {team_id}.")
        return team

    @staticmethod
    async def _revoke_sessions(session: AsyncSession, agent_id: int) -> int:
        result = await session.execute(
            update(m.AgentSession)
            .where(m.AgentSession.agent_id == agent_id, m.AgentSession.revoked_at.is_(None),
                   m.AgentSession.expires_at > utcnow())
            .values(revoked_at=utcnow())
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def token_hash(token: str) -> str:
    """What the store keeps of a session or API token: its SHA-256, hex (the token has 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _by(agent_id: int | None) -> dict[str, object]:
    """The audit entry's actor: the agent who did it, or the system (the command line) when there is none."""
    return {"actor": Actor.AGENT if agent_id is not None else Actor.SYSTEM, "agent_id": agent_id}
