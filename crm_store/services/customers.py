"""Customers and their channel identities: identify, create, find, link (by one-time code too), find duplicates,
merge (recorded), consent."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.contacts import normalize_email, normalize_phone
from crm_store.dto import (
    CustomerPage,
    CustomerView,
    DuplicateGroup,
    DuplicatePage,
    IdentifiedCustomer,
    IdentityView,
    LinkTokenCreated,
    LinkTokenRedeemed,
    MergePreview,
)
from crm_store.enums import Channel
from crm_store.errors import ConflictError, LinkTokenExpired, LinkTokenUnknown, LinkTokenUsed, NotFound
from crm_store.events import CustomerCreated, CustomersMerged, CustomerUpdated, IdentityLinked
from crm_store.services import ledger
from crm_store.services.base import Service
from crm_store.services.courses import merge_enrollments
from crm_store.services.duplicates import customer_facts, duplicate_groups
from crm_store.uow import UnitOfWork

# Tables whose rows belong to a customer and move with a merge. Later features (surveys, courses) append
# their own (model, column) pairs here, so a merge never leaves anything behind.
CUSTOMER_OWNED: list[tuple[type[m.Base], str]] = [
    (m.ChannelIdentity, "customer_id"),
    (m.Conversation, "customer_id"),
    (m.Ticket, "customer_id"),
    (m.Order, "customer_id"),
    (m.LinkToken, "customer_id"),  # a code made for the merged customer links to the one that remains
    (m.SurveyInvitation, "customer_id"),
]

# 24 random bytes: 32 URL-safe characters, so `link_<code>` fits Telegram's 64-character deep-link parameter.
LINK_TOKEN_BYTES = 24
LINK_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
DEFAULT_LINK_TOKEN_TTL = timedelta(days=7)


def hash_link_token(token: str) -> str:
    """What the store keeps of a link code: its SHA-256, so a leaked table links nobody."""
    return hashlib.sha256(token.encode()).hexdigest()


async def identify_in(
    session: AsyncSession, *, channel: Channel | str, external_id: str, display_name: str = "",
    language: str | None = None, for_customer_id: int | None = None,
) -> tuple[m.Customer, m.ChannelIdentity, bool]:
    """Find the customer behind a channel identity, or create it (for `for_customer_id`, or a new customer);
    safe when two first messages race."""
    query = select(m.ChannelIdentity).where(
        m.ChannelIdentity.channel == Channel(channel), m.ChannelIdentity.external_id == str(external_id)
    )
    identity = (await session.execute(query)).scalar_one_or_none()
    created = False
    if identity is None:
        try:
            async with session.begin_nested():
                if for_customer_id is None:
                    customer = m.Customer(name=display_name, language=language or "en", tags=[])
                    session.add(customer)
                    await session.flush()
                    for_customer_id = customer.id
                identity = m.ChannelIdentity(
                    customer_id=for_customer_id, channel=Channel(channel), external_id=str(external_id),
                    display_name=display_name,
                )
                session.add(identity)
                await session.flush()
            created = True
        except IntegrityError:  # another request created it first: use theirs
            identity = (await session.execute(query)).scalar_one()
    elif display_name and identity.display_name != display_name:
        identity.display_name = display_name
    customer = await session.get_one(m.Customer, identity.customer_id)
    return customer, identity, created


class CustomerService(Service):
    async def identify(
        self, *, channel: Channel | str, external_id: str, display_name: str = "", language: str | None = None
    ) -> IdentifiedCustomer:
        """The customer behind a chat (created on first contact)."""
        async with self.uow() as uow:
            customer, identity, created = await identify_in(
                uow.session, channel=channel, external_id=external_id, display_name=display_name,
                language=language,
            )
            if created:
                uow.emit(CustomerCreated(customer_id=customer.id))
            await uow.commit()
            return IdentifiedCustomer(CustomerView.of(customer), IdentityView.of(identity), created)

    async def get(self, *, customer_id: int) -> CustomerView:
        async with self.uow() as uow:
            return CustomerView.of(await _get_customer(uow.session, customer_id))

    async def create(
        self, *, name: str = "", email: str | None = None, phone: str | None = None, language: str = "en",
        tags: list[str] | None = None, marketing_consent: bool = False, external_ref: str | None = None,
    ) -> CustomerView:
        """A new customer; e-mail and phone are validated and normalized."""
        email_n = normalize_email(email)
        phone_n = normalize_phone(phone, self.settings.phone_region)
        async with self.uow() as uow:
            customer = m.Customer(
                name=name, email=email.strip() if email else None, phone=phone.strip() if phone else None,
                email_normalized=email_n, phone_normalized=phone_n, language=language, tags=list(tags or []),
                marketing_consent=marketing_consent, marketing_consent_at=utcnow() if marketing_consent else None,
                external_ref=external_ref,
            )
            uow.session.add(customer)
            await uow.session.flush()
            uow.emit(CustomerCreated(customer_id=customer.id))
            await uow.commit()
            return CustomerView.of(customer)

    async def find_by_contact(self, *, email: str | None = None, phone: str | None = None) -> CustomerView | None:
        """The active (not merged) customer with this e-mail or phone, written in any usual form."""
        email_n = normalize_email(email) if email else None
        phone_n = normalize_phone(phone, self.settings.phone_region) if phone else None
        if not email_n and not phone_n:
            return None
        async with self.uow() as uow:
            conditions = []
            if email_n:
                conditions.append(m.Customer.email_normalized == email_n)
            if phone_n:
                conditions.append(m.Customer.phone_normalized == phone_n)
            row = (
                await uow.session.execute(
                    select(m.Customer)
                    .where(or_(*conditions), m.Customer.merged_into_id.is_(None))
                    .order_by(m.Customer.id)
                    .limit(1)
                )
            ).scalar_one_or_none()
            return CustomerView.of(row) if row else None

    async def search_page(self, *, query: str = "", limit: int = 25, before: int | None = None) -> CustomerPage:
        """The console's customer search: active customers, newest first, keyset-paged by id (`before`), whose
        name contains `query` or whose e-mail, phone (any usual form), chat id or customer number is exactly it."""
        customer = m.Customer
        select_ = select(customer).where(customer.merged_into_id.is_(None))
        if text := query.strip():
            select_ = select_.where(or_(*_search_conditions(text, self.settings.phone_region)))
        if before is not None:
            select_ = select_.where(customer.id < before)
        async with self.uow() as uow:
            rows = list((await uow.session.execute(select_.order_by(customer.id.desc()).limit(limit + 1))).scalars())
        more = len(rows) > limit
        return CustomerPage(tuple(CustomerView.of(c) for c in rows[:limit]), rows[limit - 1].id if more else None)

    async def update_profile(self, *, customer_id: int, **changes: Any) -> CustomerView:
        """Change name, e-mail, phone, language or tags (unknown fields are refused)."""
        allowed = {"name", "email", "phone", "language", "tags"}
        if unknown := set(changes) - allowed:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
        async with self.uow() as uow:
            customer = await _get_customer(uow.session, customer_id)
            if "email" in changes:
                customer.email_normalized = normalize_email(changes["email"])
            if "phone" in changes:
                customer.phone_normalized = normalize_phone(changes["phone"], self.settings.phone_region)
            for key, value in changes.items():
                setattr(customer, key, list(value) if key == "tags" else value)
            uow.emit(CustomerUpdated(customer_id=customer_id))
            await uow.commit()
            return CustomerView.of(customer)

    async def set_consent(self, *, customer_id: int, consent: bool) -> CustomerView:
        """Record the customer's marketing consent (or its withdrawal) with the time it was given."""
        async with self.uow() as uow:
            customer = await _get_customer(uow.session, customer_id)
            customer.marketing_consent = consent
            customer.marketing_consent_at = utcnow()
            uow.emit(CustomerUpdated(customer_id=customer_id))
            await uow.commit()
            return CustomerView.of(customer)

    async def identities(self, *, customer_id: int) -> list[IdentityView]:
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(m.ChannelIdentity).where(m.ChannelIdentity.customer_id == customer_id)
                .order_by(m.ChannelIdentity.id)
            )
            return [IdentityView.of(i) for i in rows.scalars()]

    async def link_identity(self, *, channel: Channel | str, external_id: str, customer_id: int) -> CustomerView:
        """Attach a chat to a known CRM customer; the chat's own (anonymous) customer is merged into it."""
        async with self.uow() as uow:
            target = await _get_customer(uow.session, customer_id)
            await _link_in(uow, channel=channel, external_id=external_id, target=target)
            await uow.commit()
            return CustomerView.of(target)

    async def create_link_token(
        self, *, customer_id: int, agent_id: int | None = None, ttl: timedelta = DEFAULT_LINK_TOKEN_TTL
    ) -> LinkTokenCreated:
        """A one-time code that links a chat to this customer (`/start link_<code>`, `/link <code>`); the
        plaintext is returned once and never stored."""
        if ttl <= timedelta(0):
            raise ValueError("A link code must be valid for some time.")
        token = secrets.token_urlsafe(LINK_TOKEN_BYTES)
        async with self.uow() as uow:
            customer = await _get_customer(uow.session, customer_id)
            if customer.merged_into_id is not None:
                raise ConflictError("That customer was merged into another one.")
            if agent_id is not None and await uow.session.get(m.Agent, agent_id) is None:
                raise NotFound(f"No agent {agent_id}.")
            now = utcnow()
            row = m.LinkToken(token_hash=hash_link_token(token), customer_id=customer.id,
                              created_by_agent_id=agent_id, created_at=now, expires_at=now + ttl)
            uow.session.add(row)
            await uow.session.flush()
            await uow.commit()
            return LinkTokenCreated(row.id, token, row.customer_id, row.created_by_agent_id, row.expires_at)

    async def redeem_link_token(self, *, token: str, channel: Channel | str, external_id: str) -> LinkTokenRedeemed:
        """Link the chat to the customer a code was made for. A code works once and until it expires; two chats
        racing for it: one wins, the other gets LinkTokenUsed. The same chat again gets its link back."""
        token = token.strip()
        if not LINK_TOKEN_PATTERN.fullmatch(token):
            raise LinkTokenUnknown("This link code is not valid.")
        token_hash = hash_link_token(token)
        table = m.LinkToken.__table__
        async with self.uow() as uow:
            now = utcnow()
            # Claim the code with one conditional update: PostgreSQL makes a second claimer wait on the row and
            # re-check `used_at`; SQLite's BEGIN IMMEDIATE serializes the transactions. A failed link below
            # rolls the claim back.
            claimed = (await uow.session.execute(
                update(table)
                .where(table.c.token_hash == token_hash, table.c.used_at.is_(None), table.c.expires_at > now)
                .values(used_at=now)
                .returning(table.c.id, table.c.customer_id)
            )).first()
            if claimed is None:
                return await _refused_link_token(uow.session, token_hash, channel, external_id)
            target = await _get_customer(uow.session, claimed.customer_id)
            identity = await _link_in(uow, channel=channel, external_id=external_id, target=target, relink=False)
            await uow.session.execute(
                update(table).where(table.c.id == claimed.id).values(used_identity_id=identity.id)
            )
            await uow.commit()
            return LinkTokenRedeemed(CustomerView.of(target), IdentityView.of(identity))

    async def merge(self, *, source_id: int, target_id: int, agent_id: int | None = None) -> CustomerView:
        """Merge `source` into `target`: identities, conversations, tickets, ledger and orders all move."""
        return await self.merge_into(target_id=target_id, source_ids=[source_id], agent_id=agent_id)

    async def merge_into(
        self, *, target_id: int, source_ids: Sequence[int], agent_id: int | None = None
    ) -> CustomerView:
        """Merge every one of `source_ids` into `target_id`, all or nothing, each merge recorded with the agent.
        ConflictError (nothing changed) when one of them is the target or has been merged already."""
        sources = list(dict.fromkeys(source_ids))
        async with self.uow() as uow:
            if agent_id is not None and await uow.session.get(m.Agent, agent_id) is None:
                raise NotFound(f"No agent {agent_id}.")
            # Lock every row in id order first, so merges of overlapping groups cannot deadlock.
            locked = {cid: await _get_customer(uow.session, cid, for_update=True)
                      for cid in sorted({target_id, *sources})}
            _check_merge(locked, target_id=target_id, source_ids=sources)
            for source_id in sources:
                await merge_in(uow, source_id=source_id, target_id=target_id, agent_id=agent_id)
            await uow.commit()
            return CustomerView.of(locked[target_id])

    async def merge_preview(self, *, target_id: int, source_ids: Sequence[int]) -> MergePreview:
        """What `merge_into` would move, and the profile fields the target would take; the same refusals."""
        sources = list(dict.fromkeys(source_ids))
        async with self.uow() as uow:
            found = {cid: await _get_customer(uow.session, cid) for cid in sorted({target_id, *sources})}
            _check_merge(found, target_id=target_id, source_ids=sources)
            facts = await customer_facts(uow.session, found)
        target = found[target_id]
        fills: dict[str, str] = {}
        for attr in ("name", "email", "phone"):  # as merge_in does: the target keeps what it has
            given = next((getattr(found[s], attr) for s in sources if getattr(found[s], attr)), None)
            if given and not getattr(target, attr):
                fills[attr] = given
        return MergePreview(facts[target_id], tuple(facts[s] for s in sources), fills)

    async def find_duplicates(self, *, limit: int = 20, after: int | None = None) -> DuplicatePage:
        """Groups of active customers that look like one person (rules: `crm_store.services.duplicates`), ordered
        by their lowest customer id; `after` is the previous page's `next_after`."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        async with self.uow() as uow:
            groups = [g for g in await duplicate_groups(uow.session) if after is None or g[2][0] > after]
            page = groups[:limit]
            facts = await customer_facts(uow.session, [cid for _, _, ids in page for cid in ids])
        return DuplicatePage(
            tuple(DuplicateGroup(strength, tuple(matches), tuple(facts[cid] for cid in ids))
                  for strength, matches, ids in page),
            page[-1][2][0] if len(groups) > limit else None,
        )


def _search_conditions(text: str, phone_region: str) -> list[Any]:
    """Each way `text` may name a customer; the exact ones use the e-mail, phone and identity indexes."""
    customer = m.Customer
    conditions: list[Any] = [
        customer.name.icontains(text, autoescape=True),
        customer.id.in_(select(m.ChannelIdentity.customer_id).where(
            m.ChannelIdentity.channel.in_(list(Channel)), m.ChannelIdentity.external_id == text
        )),
    ]
    for normalize, column in ((normalize_email, customer.email_normalized),
                              (lambda v: normalize_phone(v, phone_region), customer.phone_normalized)):
        try:
            if value := normalize(text):
                conditions.append(column == value)
        except ValueError:  # not an e-mail / not a phone number
            pass
    if (number := text.removeprefix("#")).isdigit() and len(number) < 10:
        conditions.append(customer.id == int(number))
    return conditions


async def _get_customer(session: AsyncSession, customer_id: int, *, for_update: bool = False) -> m.Customer:
    query = select(m.Customer).where(m.Customer.id == customer_id)
    if for_update:
        query = query.with_for_update()
    customer = (await session.execute(query)).scalar_one_or_none()
    if customer is None:
        raise NotFound(f"No customer {customer_id}.")
    return customer


async def _link_in(
    uow: UnitOfWork, *, channel: Channel | str, external_id: str, target: m.Customer, relink: bool = True
) -> m.ChannelIdentity:
    """Attach a chat to `target` inside the caller's transaction; the chat's own customer is merged into it.
    With relink=False a chat already linked to another customer is refused rather than merged."""
    if target.merged_into_id is not None:
        raise ConflictError("That customer was merged into another one.")
    _, identity, _ = await identify_in(uow.session, channel=channel, external_id=external_id,
                                       for_customer_id=target.id)
    if identity.customer_id != target.id:
        if not relink and identity.linked_at is not None:
            raise ConflictError("This chat is already linked to another customer.")
        await merge_in(uow, source_id=identity.customer_id, target_id=target.id)
        identity.customer_id = target.id  # merge_in moved it in SQL; keep the loaded row in step
    identity.linked_at = utcnow()
    uow.emit(IdentityLinked(customer_id=target.id, identity_id=identity.id, channel=str(channel)))
    return identity


async def _refused_link_token(
    session: AsyncSession, token_hash: str, channel: Channel | str, external_id: str
) -> LinkTokenRedeemed:
    """Why a code could not be claimed; a code this same chat redeemed before is not an error."""
    row = (await session.execute(
        select(m.LinkToken).where(m.LinkToken.token_hash == token_hash)
    )).scalar_one_or_none()
    if row is None:
        raise LinkTokenUnknown("This link code is not valid.")
    if row.used_at is None:
        raise LinkTokenExpired("This link code has expired.")
    identity = await session.get(m.ChannelIdentity, row.used_identity_id) if row.used_identity_id else None
    if identity is None or (identity.channel, identity.external_id) != (Channel(channel), str(external_id)):
        raise LinkTokenUsed("This link code has already been used.")
    customer = await _get_customer(session, identity.customer_id)
    return LinkTokenRedeemed(CustomerView.of(customer), IdentityView.of(identity), repeated=True)


def _check_merge(customers: dict[int, m.Customer], *, target_id: int, source_ids: Sequence[int]) -> None:
    """Refuse a merge that cannot be done, saying why (the target or a source merged already, meanwhile perhaps)."""
    if not source_ids:
        raise ConflictError("Choose at least one customer to merge.")
    if target_id in source_ids:
        raise ConflictError("A customer cannot be merged into itself.")
    if (into := customers[target_id].merged_into_id) is not None:
        raise ConflictError(f"Customer #{target_id} has already been merged into customer #{into}; "
                            "merge into that one instead.")
    for source_id in source_ids:
        if (into := customers[source_id].merged_into_id) is not None:
            raise ConflictError(f"Customer #{source_id} has already been merged into customer #{into}.")


async def merge_in(uow: UnitOfWork, *, source_id: int, target_id: int, agent_id: int | None = None) -> m.Customer:
    """The merge, inside the caller's transaction; recorded (CustomerMerge) with the agent and what moved."""
    session = uow.session
    if source_id == target_id:
        raise ConflictError("A customer cannot be merged into itself.")
    # Lock both rows in id order, so two merges of the same pair cannot deadlock.
    first, second = sorted((source_id, target_id))
    locked = {first: await _get_customer(session, first, for_update=True),
              second: await _get_customer(session, second, for_update=True)}
    source, target = locked[source_id], locked[target_id]
    if source.merged_into_id is not None or target.merged_into_id is not None:
        raise ConflictError("One of these customers has already been merged.")

    moved: dict[str, int] = {}
    for model, column in CUSTOMER_OWNED:
        table = model.__table__
        result = await session.execute(update(table).where(table.c[column] == source_id).values({column: target_id}))
        if result.rowcount:  # type: ignore[attr-defined]
            moved[table.name] = result.rowcount  # type: ignore[attr-defined]
    if points := await _merge_loyalty(session, source_id=source_id, target_id=target_id):
        moved["points"] = points
    if enrollments := await session.scalar(
        select(func.count()).select_from(m.Enrollment).where(m.Enrollment.customer_id == source_id)
    ):
        moved["enrollments"] = enrollments
    await merge_enrollments(session, source_id=source_id, target_id=target_id)

    # The target keeps what it has and gains what only the source knew.
    for attr in ("name", "email", "phone", "email_normalized", "phone_normalized"):
        if not getattr(target, attr) and getattr(source, attr):
            setattr(target, attr, getattr(source, attr))
    target.tags = sorted(set(target.tags or []) | set(source.tags or []))
    if source.marketing_consent_at and (
        target.marketing_consent_at is None or source.marketing_consent_at > target.marketing_consent_at
    ):  # the most recent decision about consent wins
        target.marketing_consent = source.marketing_consent
        target.marketing_consent_at = source.marketing_consent_at
    if target.external_ref is None and source.external_ref is not None:
        ref, source.external_ref = source.external_ref, None
        await session.flush()
        target.external_ref = ref
    source.merged_into_id = target.id
    source.merged_at = utcnow()
    session.add(m.CustomerMerge(source_id=source_id, target_id=target_id, agent_id=agent_id, moved=moved,
                                merged_at=source.merged_at))
    uow.emit(CustomersMerged(source_id=source_id, target_id=target_id, agent_id=agent_id))
    return target


async def _merge_loyalty(session: AsyncSession, *, source_id: int, target_id: int) -> int:
    """Move the source's points to the target; returns the balance moved."""
    acc = m.LoyaltyAccount
    rows = (await session.execute(select(acc).where(acc.customer_id.in_([source_id, target_id])))).scalars()
    by_customer = {a.customer_id: a for a in rows}
    source_acc, target_acc = by_customer.get(source_id), by_customer.get(target_id)
    if source_acc is None:
        return 0
    if target_acc is None:
        source_acc.customer_id = target_id
        return source_acc.balance
    for model in (m.LoyaltyTransaction, m.Redemption):
        table = model.__table__
        await session.execute(
            update(table).where(table.c.account_id == source_acc.id).values(account_id=target_acc.id)
        )
    target_acc.balance += source_acc.balance
    target_acc.lifetime_points += source_acc.lifetime_points
    await session.delete(source_acc)
    await session.flush()
    await ledger.recompute_tier(session, target_acc.id)
    return source_acc.balance
