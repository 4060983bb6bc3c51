"""Loyalty: tiers, rewards, points (earn, adjust), balance and history, and concurrency-safe redemption."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.dto import (
    LoyaltySummary,
    LoyaltyTransactionView,
    RedemptionView,
    RewardView,
    TierView,
)
from crm_store.enums import Actor, AuditAction, LoyaltyTransactionKind, RedemptionStatus, TicketPriority
from crm_store.errors import OutOfStock, RewardUnavailable
from crm_store.events import RewardRedeemed
from crm_store.services import ledger
from crm_store.services.audit import audit_in
from crm_store.services.base import Service


class _AlreadyRedeemed(Exception):
    """Raised inside a redemption's transaction to roll it back when its key was redeemed meanwhile."""


class LoyaltyService(Service):
    async def define_tier(
        self, *, name: str, threshold: int, benefits: list[str] | None = None, names: dict[str, str] | None = None,
        handoff_priority: TicketPriority | str | None = None,
    ) -> TierView:
        """A tier reached at `threshold` lifetime points; its members' tickets get at least `handoff_priority`."""
        async with self.uow() as uow:
            tier = m.LoyaltyTier(name=name, threshold=threshold, benefits=list(benefits or []), names=names or {},
                                 handoff_priority=TicketPriority(handoff_priority) if handoff_priority else None)
            uow.session.add(tier)
            await uow.commit()
            return TierView.of(tier)

    async def tiers(self) -> list[TierView]:
        async with self.uow() as uow:
            rows = await uow.session.execute(select(m.LoyaltyTier).order_by(m.LoyaltyTier.threshold))
            return [TierView.of(t) for t in rows.scalars()]

    async def tier_names(self, *, customer_ids: Sequence[int]) -> dict[int, str]:
        """The tier's name of each of these customers that has reached one (one query, for lists of customers)."""
        if not customer_ids:
            return {}
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(m.LoyaltyAccount.customer_id, m.LoyaltyTier.name)
                .join(m.LoyaltyTier, m.LoyaltyTier.id == m.LoyaltyAccount.tier_id)
                .where(m.LoyaltyAccount.customer_id.in_(customer_ids))
            )
            return {customer_id: name for customer_id, name in rows}

    async def create_reward(
        self, *, name: str, cost: int, stock: int | None = None, description: str = "",
        names: dict[str, str] | None = None, min_tier_id: int | None = None, active: bool = True,
    ) -> RewardView:
        if cost <= 0:
            raise ValueError("A reward must cost at least one point.")
        async with self.uow() as uow:
            reward = m.Reward(name=name, cost=cost, stock=stock, description=description, names=names or {},
                              min_tier_id=min_tier_id, active=active)
            uow.session.add(reward)
            await uow.commit()
            return RewardView.of(reward)

    async def catalogue(self) -> list[RewardView]:
        """Active rewards that are in stock, cheapest first."""
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(m.Reward)
                .where(m.Reward.active.is_(True), (m.Reward.stock.is_(None)) | (m.Reward.stock > 0))
                .order_by(m.Reward.cost, m.Reward.id)
            )
            return [RewardView.of(r) for r in rows.scalars()]

    async def award_points(
        self, *, customer_id: int, points: int, reason: str, idempotency_key: str,
        kind: LoyaltyTransactionKind = LoyaltyTransactionKind.EARN, order_ref: str | None = None,
        agent_id: int | None = None,
    ) -> LoyaltySummary:
        """Post points to the customer's ledger once per idempotency key."""
        async with self.uow() as uow:
            posting = await ledger.post(uow.session, [ledger.LedgerEntry(
                customer_id=customer_id, kind=kind, points=points, reason=reason,
                idempotency_key=idempotency_key, order_ref=order_ref, agent_id=agent_id,
            )])
            if kind == LoyaltyTransactionKind.ADJUST and posting.transaction_ids:  # not a replayed key
                audit_in(uow.session, action=AuditAction.POINTS_ADJUSTED,
                         actor=Actor.AGENT if agent_id is not None else Actor.SYSTEM, agent_id=agent_id,
                         subject_type="customer", subject_id=customer_id,
                         details={"points": points, "transaction_id": posting.transaction_ids[idempotency_key]})
            for event in posting.events:
                uow.emit(event)
            await uow.commit()
        return await self.summary(customer_id=customer_id)

    async def adjust_points(
        self, *, customer_id: int, points: int, reason: str, agent_id: int | None, idempotency_key: str
    ) -> LoyaltySummary:
        """A manual correction by a supervisor: a reason is required, and the balance cannot go below zero."""
        if not reason.strip():
            raise ValueError("A points adjustment needs a reason.")
        if points == 0:
            raise ValueError("An adjustment of zero points changes nothing.")
        return await self.award_points(
            customer_id=customer_id, points=points, reason=reason.strip(), idempotency_key=idempotency_key,
            kind=LoyaltyTransactionKind.ADJUST, agent_id=agent_id,
        )

    async def redeem(self, *, customer_id: int, reward_id: int, idempotency_key: str) -> RedemptionView:
        """Exchange points for a reward; never overdraws, never oversells, and a repeated key redeems once."""
        key = f"redeem:{idempotency_key}"
        if (done := await self._redemption_by_key(key)) is not None:
            return done
        try:
            async with self.uow() as uow:
                session = uow.session
                reward = await session.get(m.Reward, reward_id)
                if reward is None or not reward.active:
                    raise RewardUnavailable("This reward is not available.")
                if reward.min_tier_id is not None:
                    await _require_tier(session, customer_id, reward)
                posting = await ledger.post(session, [ledger.LedgerEntry(
                    customer_id=customer_id, kind=LoyaltyTransactionKind.REDEEM, points=-reward.cost,
                    reason=f"Redeemed: {reward.name}", idempotency_key=key,
                )])
                if key not in posting.transaction_ids:  # the same tap committed since our first look
                    raise _AlreadyRedeemed
                if reward.stock is not None:
                    taken = await session.execute(
                        update(m.Reward.__table__)
                        .where(m.Reward.__table__.c.id == reward.id, m.Reward.__table__.c.stock > 0)
                        .values(stock=m.Reward.__table__.c.stock - 1)
                        .returning(m.Reward.__table__.c.id)
                    )
                    if taken.first() is None:
                        raise OutOfStock("Sorry, this reward is out of stock.")
                account_id = (await ledger.ensure_accounts(session, [customer_id]))[customer_id]
                redemption = m.Redemption(
                    account_id=account_id, reward_id=reward.id, transaction_id=posting.transaction_ids[key],
                    points=reward.cost, status=RedemptionStatus.CONFIRMED, idempotency_key=key,
                )
                session.add(redemption)
                await session.flush()
                for event in posting.events:
                    uow.emit(event)
                uow.emit(RewardRedeemed(customer_id=customer_id, redemption_id=redemption.id,
                                        reward_id=reward.id, points=reward.cost))
                await uow.commit()
                return RedemptionView(redemption.id, reward.id, reward.cost, str(redemption.status),
                                      posting.balances[customer_id], redemption.created_at)
        except (IntegrityError, _AlreadyRedeemed):  # the same tap raced itself: the other request redeemed
            if (done := await self._redemption_by_key(key)) is not None:
                return done
            raise

    async def _redemption_by_key(self, key: str) -> RedemptionView | None:
        async with self.uow() as uow:
            row = (await uow.session.execute(
                select(m.Redemption, m.LoyaltyAccount.balance)
                .join(m.LoyaltyAccount, m.LoyaltyAccount.id == m.Redemption.account_id)
                .where(m.Redemption.idempotency_key == key)
            )).first()
            if row is None:
                return None
            r, balance = row
            return RedemptionView(r.id, r.reward_id, r.points, str(r.status), balance, r.created_at, duplicate=True)

    async def summary(self, *, customer_id: int, recent: int = 10) -> LoyaltySummary:
        """Balance, tier, points to the next tier and the latest ledger rows."""
        async with self.uow() as uow:
            session = uow.session
            account = (await session.execute(
                select(m.LoyaltyAccount).where(m.LoyaltyAccount.customer_id == customer_id)
            )).scalar_one_or_none()
            tiers = list((await session.execute(select(m.LoyaltyTier).order_by(m.LoyaltyTier.threshold))).scalars())
            lifetime = account.lifetime_points if account else 0
            tier = next((t for t in tiers if account and t.id == account.tier_id), None)
            upcoming = [t for t in tiers if t.threshold > lifetime]
            nxt = upcoming[0] if upcoming else None
            rows: list[m.LoyaltyTransaction] = []
            if account is not None and recent:
                rows = list((await session.execute(
                    select(m.LoyaltyTransaction).where(m.LoyaltyTransaction.account_id == account.id)
                    .order_by(m.LoyaltyTransaction.created_at.desc(), m.LoyaltyTransaction.id.desc()).limit(recent)
                )).scalars())
            return LoyaltySummary(
                customer_id=customer_id, account_id=account.id if account else None,
                balance=account.balance if account else 0, lifetime_points=lifetime,
                tier=TierView.of(tier) if tier else None, next_tier=TierView.of(nxt) if nxt else None,
                points_to_next_tier=(nxt.threshold - lifetime) if nxt else None,
                recent=tuple(LoyaltyTransactionView.of(t) for t in rows),
            )

    async def history(self, *, customer_id: int, limit: int = 50) -> list[LoyaltyTransactionView]:
        return list((await self.summary(customer_id=customer_id, recent=limit)).recent)

    async def ledger_sum(self, *, customer_id: int) -> int:
        """The sum of the customer's ledger rows (what the balance must always equal)."""

        async with self.uow() as uow:
            total = await uow.session.scalar(
                select(func.coalesce(func.sum(m.LoyaltyTransaction.points), 0))
                .join(m.LoyaltyAccount, m.LoyaltyAccount.id == m.LoyaltyTransaction.account_id)
                .where(m.LoyaltyAccount.customer_id == customer_id)
            )
            return int(total or 0)

    async def handoff_priority(self, *, customer_id: int) -> TicketPriority | None:
        """The least priority the customer's tier gives their tickets (VIP first), or None."""
        async with self.uow() as uow:
            tier = await customer_tier(uow.session, customer_id)
            return TicketPriority(tier.handoff_priority) if tier and tier.handoff_priority else None




async def customer_tier(session: AsyncSession, customer_id: int) -> m.LoyaltyTier | None:
    """The customer's current tier, if they have reached one."""
    return (await session.execute(
        select(m.LoyaltyTier)
        .join(m.LoyaltyAccount, m.LoyaltyAccount.tier_id == m.LoyaltyTier.id)
        .where(m.LoyaltyAccount.customer_id == customer_id)
    )).scalar_one_or_none()


async def _require_tier(session: AsyncSession, customer_id: int, reward: m.Reward) -> None:
    """Inside the redemption's own transaction: a second connection would wait on SQLite's write lock."""
    needed = await session.get_one(m.LoyaltyTier, reward.min_tier_id)
    reached = await session.scalar(
        select(m.LoyaltyTier.threshold)
        .join(m.LoyaltyAccount, m.LoyaltyAccount.tier_id == m.LoyaltyTier.id)
        .where(m.LoyaltyAccount.customer_id == customer_id)
    )
    if reached is None or reached < needed.threshold:
        raise RewardUnavailable(f"This reward is for {needed.name} members and above.")
