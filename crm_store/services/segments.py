"""Segments: saved rule trees over customers (crm_store/segments.py): a live count and a sample of members, and the
member ids page by page (for campaigns). Rules are evaluated when used, so membership is always current."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import CustomerView, SegmentMembers, SegmentPreview, SegmentView
from crm_store.errors import ConflictError, InvalidSegment, NotFound
from crm_store.segments import Rule, conditions, dump_rule, member_query, parse_rule
from crm_store.services.base import Service

MAX_NAME = 100
MAX_PAGE = 5000


class SegmentService(Service):
    async def preview(
        self, *, rules: Mapping[str, Any], sample: int = 10, now: datetime | None = None
    ) -> SegmentPreview:
        """How many customers the rules select, and the newest `sample` of them."""
        async with self.uow() as uow:
            members = member_query(await checked_rule(uow.session, rules), now=now or utcnow(), dialect=self.db.dialect)
            count = await uow.session.scalar(select(func.count()).select_from(members.subquery()))
            rows = await uow.session.scalars(
                select(m.Customer).where(m.Customer.id.in_(members)).order_by(m.Customer.id.desc())
                .limit(max(sample, 0))
            )
            return SegmentPreview(int(count or 0), tuple(CustomerView.of(c) for c in rows))

    async def create(
        self, *, name: str, rules: Mapping[str, Any], description: str = "", agent_id: int | None = None
    ) -> SegmentView:
        name = _name(name)
        try:
            async with self.uow() as uow:
                rule = dump_rule(await checked_rule(uow.session, rules))
                segment = m.Segment(name=name, description=description.strip(), rules=rule,
                                    created_by_agent_id=agent_id)
                uow.session.add(segment)
                await uow.commit()
                return SegmentView.of(segment)
        except IntegrityError:
            raise ConflictError(f"There is a segment named {name!r} already (or the agent does not exist).") from None

    async def update(
        self, *, segment_id: int, name: str | None = None, rules: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> SegmentView:
        """Change what is given (name, rules, description); the rest stays."""
        try:
            async with self.uow() as uow:
                segment = await _segment(uow.session, segment_id)
                if name is not None:
                    segment.name = _name(name)
                if rules is not None:
                    segment.rules = dump_rule(await checked_rule(uow.session, rules))
                if description is not None:
                    segment.description = description.strip()
                await uow.commit()
                return SegmentView.of(segment)
        except IntegrityError:
            raise ConflictError(f"There is a segment named {name!r} already.") from None

    async def delete(self, *, segment_id: int) -> None:
        async with self.uow() as uow:
            await uow.session.delete(await _segment(uow.session, segment_id))
            await uow.commit()

    async def get(self, *, segment_id: int) -> SegmentView:
        async with self.uow() as uow:
            return SegmentView.of(await _segment(uow.session, segment_id))

    async def list(self) -> builtins.list[SegmentView]:
        """Every saved segment, by name."""
        async with self.uow() as uow:
            return [SegmentView.of(s) for s in await uow.session.scalars(select(m.Segment).order_by(m.Segment.name))]

    async def count(
        self, *, segment_id: int | None = None, rules: Mapping[str, Any] | None = None, now: datetime | None = None
    ) -> int:
        """How many customers a saved segment (or rules) selects now."""
        async with self.uow() as uow:
            members = member_query(await self._rule(uow.session, segment_id, rules), now=now or utcnow(),
                                   dialect=self.db.dialect)
            return int(await uow.session.scalar(select(func.count()).select_from(members.subquery())) or 0)

    async def member_ids(
        self, *, segment_id: int | None = None, rules: Mapping[str, Any] | None = None, after_id: int = 0,
        limit: int = 500, now: datetime | None = None,
    ) -> SegmentMembers:
        """The members' ids after `after_id`, ascending, `limit` at most (keyset pages: pass `next_after_id` on)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"A page holds 1 to {MAX_PAGE} ids.")
        async with self.uow() as uow:
            members = member_query(await self._rule(uow.session, segment_id, rules), now=now or utcnow(),
                                   dialect=self.db.dialect)
            ids = list(await uow.session.scalars(
                members.where(m.Customer.id > after_id).order_by(m.Customer.id).limit(limit + 1)
            ))
        page = ids[:limit]
        return SegmentMembers(tuple(page), page[-1] if len(ids) > limit else None)

    @staticmethod
    async def _rule(session: AsyncSession, segment_id: int | None, rules: Mapping[str, Any] | None) -> Rule:
        if (segment_id is None) == (rules is None):
            raise ValueError("Give a segment id or rules, not both.")
        if rules is not None:
            return await checked_rule(session, rules)
        return parse_rule((await _segment(session, segment_id)).rules)  # type: ignore[arg-type]


async def _segment(session: AsyncSession, segment_id: int) -> m.Segment:
    segment = await session.get(m.Segment, segment_id)
    if segment is None:
        raise NotFound(f"No segment {segment_id}.")
    return segment


def _name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidSegment(f"A segment needs a name of 1 to {MAX_NAME} characters.")
    return name


async def checked_rule(session: AsyncSession, rules: Mapping[str, Any]) -> Rule:
    """The parsed rules, whose tiers and courses exist (a misspelt name would select no one, silently)."""
    rule = parse_rule(rules)
    tiers: set[str] = set()
    courses: set[str | int] = set()
    for c in conditions(rule):
        if c.field == "tier":
            tiers.update(c.value if isinstance(c.value, list) else [c.value])
        elif c.field in ("course", "course_progress"):
            courses.add(c.course if c.field == "course_progress" else c.value)  # type: ignore[arg-type]
    if tiers:
        known = set(await session.scalars(select(m.LoyaltyTier.name)))
        if missing := sorted(tiers - known):
            raise InvalidSegment(f"tier: there is no tier {missing[0]!r}; the tiers are "
                                 f"{', '.join(sorted(known)) or 'not defined yet'}.")
    if courses:
        keys = {c for c in courses if isinstance(c, str)}
        ids = {c for c in courses if isinstance(c, int)}
        found = {(key, id_) for key, id_ in await session.execute(
            select(m.Course.key, m.Course.id).where(m.Course.key.in_(keys) | m.Course.id.in_(ids))
        )}
        if missing_courses := (keys - {k for k, _ in found}) | (ids - {i for _, i in found}):
            raise InvalidSegment(f"course: there is no course {sorted(missing_courses, key=str)[0]!r}.")
    return rule
