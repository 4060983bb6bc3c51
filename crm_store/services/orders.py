"""Orders: recorded once by their external reference; paid orders earn points by the programme's rules."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.dto import OrderView
from crm_store.enums import LoyaltyTransactionKind, OrderStatus
from crm_store.errors import NotFound
from crm_store.events import DomainEvent
from crm_store.services import ledger
from crm_store.services.base import Service
from crm_store.settings import StoreSettings


@dataclass(frozen=True)
class NewOrder:
    customer_id: int
    external_ref: str
    amount: Decimal
    currency: str
    placed_at: datetime
    status: OrderStatus
    items: list[Any]


def points_for(settings: StoreSettings, *, amount: Decimal, status: OrderStatus | str) -> int:
    """Points an order earns: whole currency units times the rate, for orders in an earning status."""
    if str(status) not in settings.points_earning_statuses or amount <= 0:
        return 0
    return math.floor(amount * Decimal(str(settings.points_per_currency_unit)))


async def add_orders(
    session: AsyncSession, settings: StoreSettings, orders: Sequence[NewOrder]
) -> tuple[list[str], list[DomainEvent]]:
    """Insert orders whose reference is new and post their points; returns (refs added, events)."""
    refs = [o.external_ref for o in orders]
    present: set[str] = set()
    for part in ledger.chunks(refs):
        present.update((await session.execute(
            select(m.Order.external_ref).where(m.Order.external_ref.in_(part))
        )).scalars())
    fresh: dict[str, NewOrder] = {}
    for o in orders:
        if o.external_ref not in present:
            fresh.setdefault(o.external_ref, o)
    if not fresh:
        return [], []
    points = {ref: points_for(settings, amount=o.amount, status=o.status) for ref, o in fresh.items()}
    await session.execute(insert(m.Order), [
        {"customer_id": o.customer_id, "external_ref": ref, "amount": o.amount, "currency": o.currency,
         "placed_at": o.placed_at, "status": o.status, "items": o.items, "points_awarded": points[ref]}
        for ref, o in fresh.items()
    ])
    posting = await ledger.post(session, [
        ledger.LedgerEntry(
            customer_id=o.customer_id, kind=LoyaltyTransactionKind.EARN, points=points[ref],
            reason=f"Order {ref}", idempotency_key=f"order:{ref}", order_ref=ref,
        )
        for ref, o in fresh.items() if points[ref] > 0
    ])
    return list(fresh), posting.events


class OrderService(Service):
    async def record_order(
        self, *, customer_id: int, external_ref: str, amount: Decimal | str | float, placed_at: datetime,
        currency: str = "USD", status: OrderStatus | str = OrderStatus.PAID, items: list[Any] | None = None,
    ) -> OrderView:
        """Record an order once (by its reference) and award its points."""
        async with self.uow() as uow:
            if await uow.session.get(m.Customer, customer_id) is None:
                raise NotFound(f"No customer {customer_id}.")
            order = NewOrder(customer_id, external_ref, Decimal(str(amount)), currency.upper(), placed_at,
                             OrderStatus(status), list(items or []))
            _, events = await add_orders(uow.session, self.settings, [order])
            for event in events:
                uow.emit(event)
            await uow.commit()
        return await self.get(external_ref=external_ref)

    async def get(self, *, external_ref: str) -> OrderView:
        async with self.uow() as uow:
            row = (await uow.session.execute(
                select(m.Order).where(m.Order.external_ref == external_ref)
            )).scalar_one_or_none()
            if row is None:
                raise NotFound(f"No order {external_ref}.")
            return OrderView.of(row)

    async def for_customer(self, *, customer_id: int, limit: int = 50) -> list[OrderView]:
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(m.Order).where(m.Order.customer_id == customer_id)
                .order_by(m.Order.placed_at.desc(), m.Order.id.desc()).limit(limit)
            )
            return [OrderView.of(o) for o in rows.scalars()]
