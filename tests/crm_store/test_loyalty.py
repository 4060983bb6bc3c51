"""Loyalty: points from orders, tiers following points, adjustments, and redemption that never overdraws."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from crm_store import models as m
from crm_store.errors import InsufficientPoints, OutOfStock, RewardUnavailable
from crm_store.events import PointsChanged, RewardRedeemed, TierChanged
from tests.support import make_agent, make_tiers

WHEN = datetime(2026, 3, 14, 10, 30, tzinfo=UTC)


async def rows(crm, model) -> int:  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as s:
        return int(await s.scalar(select(func.count()).select_from(model)))


async def customer_with_points(crm, points: int):  # type: ignore[no-untyped-def]
    c = await crm.customers.create(name="Points Holder", email=f"p{points}@example.com")
    await crm.orders.record_order(customer_id=c.id, external_ref=f"SEED-{points}", amount=str(points), placed_at=WHEN)
    return c


async def test_orders_earn_points_and_tiers_follow(crm, bus) -> None:
    await make_tiers(crm)
    c = await crm.customers.create(name="王小明", phone="+8613800138000", language="zh")
    await crm.orders.record_order(customer_id=c.id, external_ref="O-1", amount="899.99", placed_at=WHEN)
    s = await crm.loyalty.summary(customer_id=c.id)
    assert (s.balance, s.tier.name, s.next_tier.name, s.points_to_next_tier) == (899, "Silver", "Gold", 101)

    await crm.orders.record_order(customer_id=c.id, external_ref="O-2", amount="150", placed_at=WHEN)
    s = await crm.loyalty.summary(customer_id=c.id)
    assert (s.balance, s.lifetime_points, s.tier.name, s.points_to_next_tier) == (1049, 1049, "Gold", 3951)
    # a new account opens in the base tier; crossing 1000 lifetime points promotes it
    assert [(e.from_tier, e.to_tier) for e in bus.of(TierChanged)] == [("Silver", "Gold")]

    # the same order again earns nothing; a cancelled order earns nothing
    await crm.orders.record_order(customer_id=c.id, external_ref="O-2", amount="150", placed_at=WHEN)
    await crm.orders.record_order(customer_id=c.id, external_ref="O-3", amount="500", placed_at=WHEN,
                                  status="cancelled")
    s = await crm.loyalty.summary(customer_id=c.id)
    assert s.balance == 1049 == await crm.loyalty.ledger_sum(customer_id=c.id)
    assert await rows(crm, m.Order) == 3
    assert [t.order_ref for t in s.recent] == ["O-2", "O-1"]


async def test_redeem_takes_points_and_stock_once_per_key(crm, bus) -> None:
    c = await customer_with_points(crm, 500)
    reward = await crm.loyalty.create_reward(name="Tea set", cost=200, stock=3, names={"zh": "茶具"})
    first = await crm.loyalty.redeem(customer_id=c.id, reward_id=reward.id, idempotency_key="tap-1")
    again = await crm.loyalty.redeem(customer_id=c.id, reward_id=reward.id, idempotency_key="tap-1")
    assert (first.balance_after, first.duplicate) == (300, False)
    assert (again.id, again.duplicate, again.balance_after) == (first.id, True, 300)
    assert await rows(crm, m.Redemption) == 1
    assert [r.stock for r in await crm.loyalty.catalogue()] == [2]
    balance = (await crm.loyalty.summary(customer_id=c.id)).balance
    assert balance == 300 == await crm.loyalty.ledger_sum(customer_id=c.id)
    assert len(bus.of(RewardRedeemed)) == 1
    assert bus.of(PointsChanged)[-1].delta == -200


async def test_a_double_tap_at_the_same_moment_redeems_once(crm) -> None:
    c = await customer_with_points(crm, 1000)
    reward = await crm.loyalty.create_reward(name="Mug", cost=100)
    results = await asyncio.gather(
        *[crm.loyalty.redeem(customer_id=c.id, reward_id=reward.id, idempotency_key="same-tap") for _ in range(5)]
    )
    assert len({r.id for r in results}) == 1
    assert (await crm.loyalty.summary(customer_id=c.id)).balance == 900


async def test_refusals_change_nothing(crm) -> None:
    c = await customer_with_points(crm, 150)
    dear = await crm.loyalty.create_reward(name="Teapot", cost=200)
    with pytest.raises(InsufficientPoints):
        await crm.loyalty.redeem(customer_id=c.id, reward_id=dear.id, idempotency_key="a")
    gone = await crm.loyalty.create_reward(name="Sold out", cost=10, stock=0)
    with pytest.raises(OutOfStock):
        await crm.loyalty.redeem(customer_id=c.id, reward_id=gone.id, idempotency_key="b")
    off = await crm.loyalty.create_reward(name="Retired", cost=10, active=False)
    with pytest.raises(RewardUnavailable):
        await crm.loyalty.redeem(customer_id=c.id, reward_id=off.id, idempotency_key="c")
    balance = (await crm.loyalty.summary(customer_id=c.id)).balance
    assert balance == 150 == await crm.loyalty.ledger_sum(customer_id=c.id)
    assert await rows(crm, m.Redemption) == 0
    assert await rows(crm, m.LoyaltyTransaction) == 1


async def test_tier_only_rewards(crm) -> None:
    tiers = await make_tiers(crm)
    gold_only = await crm.loyalty.create_reward(name="Private tasting", cost=50, min_tier_id=tiers[1].id)
    silver = await customer_with_points(crm, 300)
    with pytest.raises(RewardUnavailable, match="Gold"):
        await crm.loyalty.redeem(customer_id=silver.id, reward_id=gold_only.id, idempotency_key="x")
    gold = await customer_with_points(crm, 1200)
    done = await crm.loyalty.redeem(customer_id=gold.id, reward_id=gold_only.id, idempotency_key="y")
    assert done.balance_after == 1150


async def test_adjustments_need_a_reason_and_cannot_overdraw(crm) -> None:
    supervisor = await make_agent(crm, role="supervisor")
    c = await customer_with_points(crm, 100)
    with pytest.raises(ValueError, match="reason"):
        await crm.loyalty.adjust_points(customer_id=c.id, points=50, reason=" ", agent_id=supervisor.id,
                                        idempotency_key="k1")
    s = await crm.loyalty.adjust_points(customer_id=c.id, points=-40, reason="Goodwill reversal",
                                        agent_id=supervisor.id, idempotency_key="k2")
    assert s.balance == 60 and s.recent[0].kind == "adjust" and s.recent[0].agent_id == supervisor.id
    with pytest.raises(InsufficientPoints):
        await crm.loyalty.adjust_points(customer_id=c.id, points=-61, reason="too much", agent_id=supervisor.id,
                                        idempotency_key="k3")
    assert (await crm.loyalty.summary(customer_id=c.id)).balance == 60 == await crm.loyalty.ledger_sum(customer_id=c.id)


async def test_fifty_concurrent_redemptions_against_a_balance_for_ten(crm, is_postgres) -> None:
    """Exactly 10 succeed; the balance never goes negative and always equals the ledger sum."""
    c = await customer_with_points(crm, 1000)
    reward = await crm.loyalty.create_reward(name="Sample pack", cost=100)
    balances: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:  # reads the balance while the redemptions run
        # Stopped by an event, not cancelled mid-query: a query cancelled twice (here, and again by the loop's
        # teardown) leaves SQLAlchemy's graceful aiosqlite close waiting forever on a worker thread that its
        # forced close has already stopped.
        while not done.is_set():
            async with crm.db.sessionmaker() as s:
                balances.append(int(await s.scalar(
                    select(m.LoyaltyAccount.balance).where(m.LoyaltyAccount.customer_id == c.id)
                )))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(
        *[crm.loyalty.redeem(customer_id=c.id, reward_id=reward.id, idempotency_key=f"k{i}") for i in range(50)],
        return_exceptions=True,
    )
    done.set()
    await watcher
    succeeded = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert len(succeeded) == 10 and len(refused) == 40, [type(r) for r in results if isinstance(r, BaseException)]
    assert sorted(r.balance_after for r in succeeded) == list(range(0, 1000, 100))
    assert balances and min(balances) >= 0
    summary = await crm.loyalty.summary(customer_id=c.id)
    assert summary.balance == 0 == await crm.loyalty.ledger_sum(customer_id=c.id)
    assert await rows(crm, m.Redemption) == 10
