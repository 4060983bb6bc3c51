"""The points ledger, at the level of one open transaction: used by loyalty, orders, merges and imports.

The account's `balance` and `lifetime_points` are sums of its ledger rows, kept in the same transaction as
every row; a debit is a conditional UPDATE (`balance + delta >= 0`), so concurrent debits can never overdraw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.enums import LoyaltyTransactionKind
from crm_store.errors import InsufficientPoints
from crm_store.events import DomainEvent, PointsChanged, TierChanged

T = TypeVar("T")
CHUNK = 500  # rows per IN (...) list: well under SQLite's and asyncpg's parameter limits


@dataclass(frozen=True)
class LedgerEntry:
    customer_id: int
    kind: LoyaltyTransactionKind
    points: int
    reason: str
    idempotency_key: str
    order_ref: str | None = None
    agent_id: int | None = None


@dataclass(frozen=True)
class Posting:
    """What a posting did: the new rows' ids by key (skipped keys are absent), and events to publish."""

    transaction_ids: dict[str, int]
    balances: dict[int, int]  # customer_id -> balance after
    events: list[DomainEvent]


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def ensure_accounts(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, int]:
    """The loyalty account id of each customer, opening accounts that do not exist yet."""
    wanted = sorted(set(customer_ids))
    found: dict[int, int] = {}
    for part in chunks(wanted):
        rows = await session.execute(
            select(m.LoyaltyAccount.customer_id, m.LoyaltyAccount.id).where(m.LoyaltyAccount.customer_id.in_(part))
        )
        found.update({cid: aid for cid, aid in rows.all()})
    missing = [cid for cid in wanted if cid not in found]
    if missing:
        tiers = await _tiers(session)
        base_tier = _tier_for(tiers, 0)
        now = utcnow()
        # ON CONFLICT DO NOTHING: two transactions opening the same account at once both go on.
        dialect_insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        table = m.LoyaltyAccount.__table__
        await session.execute(
            dialect_insert(table).on_conflict_do_nothing(index_elements=["customer_id"]),
            [{"customer_id": cid, "balance": 0, "lifetime_points": 0, "created_at": now, "updated_at": now,
              "tier_id": base_tier.id if base_tier else None} for cid in missing],
        )
        for part in chunks(missing):
            rows = await session.execute(
                select(m.LoyaltyAccount.customer_id, m.LoyaltyAccount.id).where(
                    m.LoyaltyAccount.customer_id.in_(part)
                )
            )
            found.update({cid: aid for cid, aid in rows.all()})
    return found


async def existing_keys(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    present: set[str] = set()
    for part in chunks(keys):
        rows = await session.execute(
            select(m.LoyaltyTransaction.idempotency_key).where(m.LoyaltyTransaction.idempotency_key.in_(part))
        )
        present.update(rows.scalars())
    return present


async def post(session: AsyncSession, entries: Sequence[LedgerEntry]) -> Posting:
    """Write ledger rows (skipping keys already posted) and move the accounts' sums and tiers with them."""
    seen: set[str] = set()
    unique = [e for e in entries if not (e.idempotency_key in seen or seen.add(e.idempotency_key))]
    already = await existing_keys(session, [e.idempotency_key for e in unique])
    todo = [e for e in unique if e.idempotency_key not in already and e.points != 0]
    if not todo:
        return Posting({}, {}, [])

    accounts = await ensure_accounts(session, (e.customer_id for e in todo))
    deltas: dict[int, int] = defaultdict(int)
    earned: dict[int, int] = defaultdict(int)
    for e in todo:
        deltas[e.customer_id] += e.points
        if e.kind == LoyaltyTransactionKind.EARN and e.points > 0:
            earned[e.customer_id] += e.points

    credits = [cid for cid, d in deltas.items() if d >= 0]
    debits = [cid for cid, d in deltas.items() if d < 0]
    account = m.LoyaltyAccount
    for cid in sorted(debits):  # one conditional UPDATE each: the row lock makes concurrent debits queue
        result = await session.execute(
            update(account)
            .where(account.id == accounts[cid], account.balance + deltas[cid] >= 0)
            .values(balance=account.balance + deltas[cid], lifetime_points=account.lifetime_points + earned[cid])
            .returning(account.id)
        )
        if result.first() is None:
            raise InsufficientPoints("Not enough points for this.")
    if credits:
        table = account.__table__.c
        await session.execute(  # a Core executemany: one round trip per batch, not per account
            update(account.__table__)
            .where(table.id == bindparam("aid"))
            .values(balance=table.balance + bindparam("delta"),
                    lifetime_points=table.lifetime_points + bindparam("earned")),
            [{"aid": accounts[cid], "delta": deltas[cid], "earned": earned[cid]} for cid in credits],
        )

    ids = await _insert_rows(session, todo, accounts)
    balances, events = await _settle(session, accounts, deltas, todo)
    return Posting(ids, balances, events)


async def _insert_rows(
    session: AsyncSession, todo: Sequence[LedgerEntry], accounts: dict[int, int]
) -> dict[str, int]:
    await session.execute(
        insert(m.LoyaltyTransaction),
        [
            {
                "account_id": accounts[e.customer_id],
                "kind": e.kind,
                "points": e.points,
                "reason": e.reason,
                "order_ref": e.order_ref,
                "agent_id": e.agent_id,
                "idempotency_key": e.idempotency_key,
            }
            for e in todo
        ],
    )
    ids: dict[str, int] = {}
    for part in chunks([e.idempotency_key for e in todo]):
        rows = await session.execute(
            select(m.LoyaltyTransaction.idempotency_key, m.LoyaltyTransaction.id).where(
                m.LoyaltyTransaction.idempotency_key.in_(part)
            )
        )
        ids.update({k: i for k, i in rows.all()})
    return ids


async def _settle(
    session: AsyncSession,
    accounts: dict[int, int],
    deltas: dict[int, int],
    todo: Sequence[LedgerEntry],
) -> tuple[dict[int, int], list[DomainEvent]]:
    """Re-read the moved accounts, promote or demote tiers, and describe what changed."""
    tiers = await _tiers(session)
    names = {t.id: t.name for t in tiers}
    kinds = {e.customer_id: str(e.kind) for e in todo}
    balances: dict[int, int] = {}
    events: list[DomainEvent] = []
    tier_moves: list[dict[str, int | None]] = []
    touched = sorted(deltas)
    for part in chunks(touched):
        rows = await session.execute(
            select(
                m.LoyaltyAccount.customer_id,
                m.LoyaltyAccount.id,
                m.LoyaltyAccount.balance,
                m.LoyaltyAccount.lifetime_points,
                m.LoyaltyAccount.tier_id,
            ).where(m.LoyaltyAccount.customer_id.in_(part))
        )
        for cid, aid, balance, lifetime, tier_id in rows.all():
            balances[cid] = balance
            events.append(
                PointsChanged(customer_id=cid, account_id=aid, delta=deltas[cid], balance=balance, kind=kinds[cid])
            )
            new_tier = _tier_for(tiers, lifetime)
            new_id = new_tier.id if new_tier else None
            if new_id != tier_id:
                tier_moves.append({"aid": aid, "tier": new_id})
                events.append(
                    TierChanged(customer_id=cid, from_tier=names.get(tier_id or -1), to_tier=names.get(new_id or -1))
                )
    if tier_moves:
        table = m.LoyaltyAccount.__table__
        await session.execute(
            update(table).where(table.c.id == bindparam("aid")).values(tier_id=bindparam("tier")), tier_moves
        )
    return balances, events


async def _tiers(session: AsyncSession) -> list[m.LoyaltyTier]:
    return list((await session.execute(select(m.LoyaltyTier).order_by(m.LoyaltyTier.threshold))).scalars())


def _tier_for(tiers: Sequence[m.LoyaltyTier], lifetime_points: int) -> m.LoyaltyTier | None:
    reached = [t for t in tiers if t.threshold <= lifetime_points]
    return reached[-1] if reached else None


async def recompute_tier(session: AsyncSession, account_id: int) -> None:
    """Set an account's tier from its lifetime points (after a merge moved ledger rows into it)."""
    acc = (await session.execute(select(m.LoyaltyAccount).where(m.LoyaltyAccount.id == account_id))).scalar_one()
    tier = _tier_for(await _tiers(session), acc.lifetime_points)
    acc.tier_id = tier.id if tier else None
