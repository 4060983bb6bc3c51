"""Canned responses: saved replies an agent inserts by shortcut, with variables such as {customer.name}.

Variables are filled from a fixed list by a regular expression: a template is never formatted or evaluated, so
`{customer.__class__}`, `{0}` or a stray brace stay as typed."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.dto import CannedResponseView
from crm_store.errors import ConflictError, NotFound
from crm_store.services.base import Service

SHORTCUT_PATTERN = re.compile(r"^[\w.-]{1,50}$")
VARIABLE = re.compile(r"\{\s*([a-z]+\.[a-z_]+)\s*\}")


def _field(source: Any, name: str) -> Any:
    """One plain field of a view (or a mapping); missing reads as None."""
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _first_name(customer: Any) -> str:
    name = str(_field(customer, "name") or "").strip()
    return name.split()[0] if name else ""


# The only values a template can reach: {source.field} -> how to read it from the object given for `source`.
VARIABLES: dict[str, Callable[[Any], Any]] = {
    "customer.name": lambda c: _field(c, "name"),
    "customer.first_name": _first_name,
    "customer.email": lambda c: _field(c, "email"),
    "agent.name": lambda a: _field(a, "name"),
    "ticket.id": lambda t: _field(t, "id"),
}


def render(body: str, *, customer: Any = None, agent: Any = None, ticket: Any = None) -> str:
    """The template with its known variables filled (empty when the value is missing); anything else as typed."""
    sources = {"customer": customer, "agent": agent, "ticket": ticket}

    def fill(match: re.Match[str]) -> str:
        variable = match.group(1)
        read = VARIABLES.get(variable)
        if read is None:
            return match.group(0)
        source = sources[variable.partition(".")[0]]
        value = read(source) if source is not None else None
        return "" if value is None else str(value)

    return VARIABLE.sub(fill, body)


class CannedResponseService(Service):
    async def create(
        self, *, shortcut: str, title: str, body: str, language: str = "en", team_id: int | None = None,
        created_by_agent_id: int | None = None,
    ) -> CannedResponseView:
        response = m.CannedResponse(created_by_agent_id=created_by_agent_id)
        _fill(response, shortcut=shortcut, title=title, body=body, language=language, team_id=team_id)
        try:
            async with self.uow() as uow:
                uow.session.add(response)
                await uow.commit()
                return CannedResponseView.of(response)
        except IntegrityError:
            raise ConflictError(f"The shortcut /{response.shortcut} is taken (or the team does not exist).") from None

    async def update(
        self, *, response_id: int, shortcut: str, title: str, body: str, language: str, team_id: int | None
    ) -> CannedResponseView:
        """Replace every field of a canned response (the console's edit form sends them all)."""
        try:
            async with self.uow() as uow:
                response = await _response(uow.session, response_id)
                _fill(response, shortcut=shortcut, title=title, body=body, language=language, team_id=team_id)
                await uow.commit()
                return CannedResponseView.of(response)
        except IntegrityError:
            raise ConflictError(f"The shortcut /{_shortcut(shortcut)} is taken (or the team does not exist).") from None

    async def delete(self, *, response_id: int) -> None:
        async with self.uow() as uow:
            await uow.session.delete(await _response(uow.session, response_id))
            await uow.commit()

    async def list(
        self, *, language: str | None = None, team_id: int | None = None, prefix: str = ""
    ) -> builtins.list[CannedResponseView]:
        """By shortcut; `team_id`: that team's and everyone's (no team) responses; `prefix`: shortcuts that start
        with it (the composer's "/" completion)."""
        query = select(m.CannedResponse)
        if language:
            query = query.where(m.CannedResponse.language == language)
        if team_id is not None:
            query = query.where(or_(m.CannedResponse.team_id == team_id, m.CannedResponse.team_id.is_(None)))
        if prefix := prefix.strip().lstrip("/"):
            query = query.where(m.CannedResponse.shortcut.startswith(prefix, autoescape=True))
        async with self.uow() as uow:
            rows = await uow.session.execute(query.order_by(m.CannedResponse.shortcut))
            return [CannedResponseView.of(r) for r in rows.scalars()]

    async def find(self, *, shortcut: str) -> CannedResponseView | None:
        async with self.uow() as uow:
            response = (await uow.session.execute(
                select(m.CannedResponse).where(m.CannedResponse.shortcut == _shortcut(shortcut))
            )).scalar_one_or_none()
            return CannedResponseView.of(response) if response is not None else None

    def render(self, *, body: str, customer: Any = None, agent: Any = None, ticket: Any = None) -> str:
        """Fill {customer.name}, {customer.first_name}, {customer.email}, {agent.name}, {ticket.id}."""
        return render(body, customer=customer, agent=agent, ticket=ticket)


async def _response(session: AsyncSession, response_id: int) -> m.CannedResponse:
    response = await session.get(m.CannedResponse, response_id)
    if response is None:
        raise NotFound(f"No canned response {response_id}.")
    return response


def _shortcut(text: str) -> str:
    return text.strip().lstrip("/")


def _fill(
    response: m.CannedResponse, *, shortcut: str, title: str, body: str, language: str, team_id: int | None
) -> None:
    shortcut = _shortcut(shortcut)
    if not SHORTCUT_PATTERN.match(shortcut):
        raise ValueError("A shortcut is 1 to 50 letters, digits, '_', '-' or '.', without spaces.")
    if not title.strip() or not body.strip():
        raise ValueError("A canned response needs a title and a body.")
    response.shortcut = shortcut
    response.title = title.strip()[:200]
    response.body = body
    response.language = (language or "en").strip()[:8]
    response.team_id = team_id
