"""Finding customers who are one person recorded twice, and the facts to compare them by.

Rules (what `CustomerService.find_duplicates` groups), over active (not merged) customers only:

- the same phone (E.164) or the same e-mail (lower-cased): found with GROUP BY on the indexed normalized columns;
- the same name (`contacts.name_key`: case, accents, punctuation, spacing and word order aside, at least two words
  or, for Chinese, Japanese and Korean, two characters), and, since many people share a name, only when something
  else agrees and nothing disagrees: the same language, and no e-mail or phone that both have and that differs.

Customers tied by any of these, directly or through one another, form one group. A group is `EXACT` when its
shared phones and e-mails alone tie it together, `NAME` when someone is in it by name only. Names are compared in
one pass over the active customers' names (bucketed by language and key, never pair by pair across the table); a
bucket of more than `MAX_NAME_BUCKET` customers (a very common name) is skipped as too weak to suggest a merge."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from itertools import combinations, groupby
from typing import Any

from sqlalchemy import func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import UTCDateTime
from crm_store.contacts import name_key
from crm_store.dto import CustomerFacts, CustomerView, DuplicateMatch
from crm_store.enums import DuplicateReason, MatchStrength

MAX_NAME_BUCKET = 50
NAME_BATCH = 2000  # rows read at a time in the name pass


class _Components:
    """Union-find over customer ids."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def root(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while (up := self.parent[x]) != x:
            self.parent[x] = self.parent[up]  # path halving
            x = up
        return x

    def join(self, ids: Iterable[int]) -> None:
        first, *rest = ids
        for other in rest:
            self.parent[self.root(other)] = self.root(first)


async def duplicate_groups(session: AsyncSession) -> list[tuple[MatchStrength, list[DuplicateMatch], list[int]]]:
    """Every group of likely duplicates: (strength, matches, customer ids in order), by lowest id."""
    contact = await _contact_matches(session)
    matches = contact + await _name_matches(session)
    everyone, by_contact = _Components(), _Components()
    for match in matches:
        everyone.join(match.customer_ids)
    for match in contact:
        by_contact.join(match.customer_ids)
    members: dict[int, list[int]] = defaultdict(list)
    for cid in everyone.parent:
        members[everyone.root(cid)].append(cid)
    reasons: dict[int, list[DuplicateMatch]] = defaultdict(list)
    for match in matches:
        reasons[everyone.root(match.customer_ids[0])].append(match)
    groups = []
    for root, ids in members.items():
        ids.sort()
        tied = len({by_contact.root(cid) for cid in ids}) == 1 and all(cid in by_contact.parent for cid in ids)
        groups.append((MatchStrength.EXACT if tied else MatchStrength.NAME, reasons[root], ids))
    groups.sort(key=lambda g: g[2][0])
    return groups


async def _contact_matches(session: AsyncSession) -> list[DuplicateMatch]:
    c = m.Customer
    active = c.merged_into_id.is_(None)
    matches = []
    for reason, column in ((DuplicateReason.PHONE, c.phone_normalized), (DuplicateReason.EMAIL, c.email_normalized)):
        shared = select(column).where(active, column.is_not(None)).group_by(column).having(func.count() > 1)
        rows = await session.execute(select(column, c.id).where(active, column.in_(shared)).order_by(column, c.id))
        for value, pairs in groupby(rows.all(), key=lambda row: row[0]):
            matches.append(DuplicateMatch(reason, value, tuple(cid for _, cid in pairs)))
    return matches


async def _name_matches(session: AsyncSession) -> list[DuplicateMatch]:
    c = m.Customer
    buckets: dict[tuple[str, str], list[tuple[int, str | None, str | None]]] = defaultdict(list)
    rows = await session.stream(
        select(c.id, c.name, c.language, c.email_normalized, c.phone_normalized)
        .where(c.merged_into_id.is_(None), c.name != "").execution_options(yield_per=NAME_BATCH)
    )
    async for cid, name, language, email, phone in rows:
        if key := name_key(name):
            buckets[(language, key)].append((cid, email, phone))
    matches = []
    for (_, key), people in buckets.items():
        if not 2 <= len(people) <= MAX_NAME_BUCKET:
            continue
        parts = _Components()
        for (a, email_a, phone_a), (b, email_b, phone_b) in combinations(people, 2):
            if _agree(email_a, email_b) and _agree(phone_a, phone_b):
                parts.join((a, b))
        tied: dict[int, list[int]] = defaultdict(list)
        for cid in parts.parent:
            tied[parts.root(cid)].append(cid)
        matches.extend(DuplicateMatch(DuplicateReason.NAME, key, tuple(sorted(ids))) for ids in tied.values())
    return matches


def _agree(a: str | None, b: str | None) -> bool:
    """Two contact values do not tell the people apart: one is missing, or they are the same."""
    return a is None or b is None or a == b


async def customer_facts(session: AsyncSession, ids: Collection[int]) -> dict[int, CustomerFacts]:
    """Each customer's profile with their chats, conversations, tickets, orders, points, surveys and courses."""
    if not ids:
        return {}
    wanted = sorted(set(ids))
    customers = (await session.execute(select(m.Customer).where(m.Customer.id.in_(wanted)))).scalars().all()
    channels: dict[int, list[str]] = defaultdict(list)
    identity = m.ChannelIdentity
    for cid, channel in await session.execute(
        select(identity.customer_id, identity.channel).where(identity.customer_id.in_(wanted))
        .order_by(identity.customer_id, identity.id)
    ):
        channels[cid].append(str(channel))

    async def count(column: Any) -> dict[int, int]:
        rows = await session.execute(select(column, func.count()).where(column.in_(wanted)).group_by(column))
        return {cid: n for cid, n in rows.all()}

    conversations, tickets, orders, surveys, courses = [
        await count(column) for column in (m.Conversation.customer_id, m.Ticket.customer_id, m.Order.customer_id,
                                           m.SurveyInvitation.customer_id, m.Enrollment.customer_id)
    ]
    last_contact = dict((await session.execute(
        select(m.Conversation.customer_id, type_coerce(func.max(m.Conversation.last_message_at), UTCDateTime()))
        .where(m.Conversation.customer_id.in_(wanted)).group_by(m.Conversation.customer_id)
    )).all())
    account = m.LoyaltyAccount
    loyalty = {cid: (balance, tier) for cid, balance, tier in (await session.execute(
        select(account.customer_id, account.balance, m.LoyaltyTier.name)
        .outerjoin(m.LoyaltyTier, m.LoyaltyTier.id == account.tier_id).where(account.customer_id.in_(wanted))
    )).all()}
    return {
        c.id: CustomerFacts(
            customer=CustomerView.of(c), channels=tuple(channels[c.id]), conversations=conversations.get(c.id, 0),
            tickets=tickets.get(c.id, 0), orders=orders.get(c.id, 0), points=loyalty.get(c.id, (0, None))[0],
            tier=loyalty.get(c.id, (0, None))[1], surveys=surveys.get(c.id, 0), courses=courses.get(c.id, 0),
            last_contact_at=last_contact.get(c.id),
        )
        for c in customers
    }
