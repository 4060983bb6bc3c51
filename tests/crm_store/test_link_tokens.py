"""One-time link codes: created by an agent (hash stored, plaintext shown once), redeemed once by a chat, which
is then linked to the customer; unknown, used and expired codes are refused with their own errors, and two chats
racing for one code: exactly one wins."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.errors import (
    ConflictError,
    DomainError,
    LinkTokenError,
    LinkTokenExpired,
    LinkTokenUnknown,
    LinkTokenUsed,
    NotFound,
)
from crm_store.events import IdentityLinked
from tests.conftest import run_blocking
from tests.support import make_agent, make_chat


async def token_row(crm, token_id: int) -> m.LinkToken:  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as s:
        return (await s.execute(select(m.LinkToken).where(m.LinkToken.id == token_id))).scalar_one()


async def identity(crm, channel: str, external_id: str):  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as s:
        return (await s.execute(select(m.ChannelIdentity).where(
            m.ChannelIdentity.channel == channel, m.ChannelIdentity.external_id == external_id))).scalar_one()


async def test_a_code_is_url_safe_fits_a_deep_link_and_only_its_hash_is_stored(crm) -> None:
    ann = await crm.customers.create(name="Ann Lee", email="ann@example.com")
    agent = await make_agent(crm)
    before = utcnow()
    created = await crm.customers.create_link_token(customer_id=ann.id, agent_id=agent.id, ttl=timedelta(days=2))
    assert re.fullmatch(r"[A-Za-z0-9_-]+", created.token) and len(created.token) >= 32
    assert len(created.start_parameter) <= 64 and created.start_parameter == f"link_{created.token}"
    assert created.chat_command == f"/link {created.token}"
    assert (created.customer_id, created.created_by_agent_id) == (ann.id, agent.id)
    assert before + timedelta(days=2) <= created.expires_at <= utcnow() + timedelta(days=2)
    row = await token_row(crm, created.id)
    assert row.token_hash == hashlib.sha256(created.token.encode()).hexdigest()
    assert created.token not in (row.token_hash, str(row.__dict__))
    assert row.used_at is None and row.used_identity_id is None
    other = await crm.customers.create_link_token(customer_id=ann.id)
    assert other.token != created.token


async def test_creating_a_code_checks_its_input(crm) -> None:
    ann = await crm.customers.create(name="Ann")
    with pytest.raises(NotFound):
        await crm.customers.create_link_token(customer_id=999)
    with pytest.raises(NotFound):
        await crm.customers.create_link_token(customer_id=ann.id, agent_id=999)
    with pytest.raises(ValueError):
        await crm.customers.create_link_token(customer_id=ann.id, ttl=timedelta(0))


async def test_redeeming_links_the_chat_once(crm, bus) -> None:
    ann = await crm.customers.create(name="Ann Lee", email="ann@example.com")
    created = await crm.customers.create_link_token(customer_id=ann.id)
    chat = await make_chat(crm, channel="webchat", external_id="v-1", text="hi")

    linked = await crm.customers.redeem_link_token(token=f"  {created.token} ", channel="webchat",
                                                   external_id="v-1")
    assert linked.customer.id == ann.id and not linked.repeated
    assert (linked.identity.customer_id, linked.identity.channel, linked.identity.external_id) == (
        ann.id, "webchat", "v-1")
    assert linked.identity.linked_at is not None
    # the chat's anonymous customer was merged in, with its conversation
    assert (await crm.conversations.get(conversation_id=chat.conversation.id)).customer_id == ann.id
    assert (await crm.customers.get(customer_id=chat.customer_id)).merged_into_id == ann.id
    row = await token_row(crm, created.id)
    assert row.used_at is not None and row.used_identity_id == linked.identity.id
    (event,) = bus.of(IdentityLinked)
    assert (event.customer_id, event.identity_id, event.channel) == (ann.id, linked.identity.id, "webchat")

    # the same chat again (a second tap of the link): its link, not an error
    again = await crm.customers.redeem_link_token(token=created.token, channel="webchat", external_id="v-1")
    assert again.repeated and again.customer.id == ann.id
    # another chat: refused, and left as it was
    intruder = await make_chat(crm, channel="webchat", external_id="v-2", text="hi")
    with pytest.raises(LinkTokenUsed):
        await crm.customers.redeem_link_token(token=created.token, channel="webchat", external_id="v-2")
    assert (await identity(crm, "webchat", "v-2")).customer_id == intruder.customer_id
    assert (await identity(crm, "webchat", "v-2")).linked_at is None
    assert len(bus.of(IdentityLinked)) == 1


async def test_a_chat_that_never_wrote_can_redeem(crm) -> None:
    ann = await crm.customers.create(name="Ann")
    created = await crm.customers.create_link_token(customer_id=ann.id)
    linked = await crm.customers.redeem_link_token(token=created.token, channel="telegram", external_id="4242")
    assert linked.customer.id == ann.id
    assert [(i.channel, i.external_id) for i in await crm.customers.identities(customer_id=ann.id)] == [
        ("telegram", "4242")]


@pytest.mark.parametrize("token", ["", "   ", "short", "has spaces in it but is long enough", "x" * 65,
                                   "A" * 32, "ÄÖÜäöü" * 6])
async def test_unknown_and_malformed_codes_are_unknown(crm, token: str) -> None:
    ann = await crm.customers.create(name="Ann")
    await crm.customers.create_link_token(customer_id=ann.id)
    await make_chat(crm, channel="webchat", external_id="v-1")
    with pytest.raises(LinkTokenUnknown):
        await crm.customers.redeem_link_token(token=token, channel="webchat", external_id="v-1")
    assert (await identity(crm, "webchat", "v-1")).linked_at is None


async def test_an_expired_code_is_refused_and_stays_unused(crm) -> None:
    ann = await crm.customers.create(name="Ann")
    created = await crm.customers.create_link_token(customer_id=ann.id, ttl=timedelta(hours=1))
    async with crm.db.sessionmaker() as s:
        await s.execute(update(m.LinkToken).where(m.LinkToken.id == created.id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    with pytest.raises(LinkTokenExpired):
        await crm.customers.redeem_link_token(token=created.token, channel="webchat", external_id="v-1")
    assert (await token_row(crm, created.id)).used_at is None


def test_the_errors_are_distinct_domain_errors() -> None:
    kinds = (LinkTokenUnknown, LinkTokenUsed, LinkTokenExpired)
    assert all(issubclass(k, LinkTokenError) and issubclass(k, DomainError) for k in kinds)
    assert len({k.code for k in kinds}) == 3


async def test_two_chats_racing_for_one_code_exactly_one_wins(crm, bus) -> None:
    ann = await crm.customers.create(name="Ann")
    for round_ in range(3):
        created = await crm.customers.create_link_token(customer_id=ann.id)
        chats = [f"race-{round_}-{i}" for i in range(4)]
        for chat in chats:
            await make_chat(crm, channel="webchat", external_id=chat)
        results = await asyncio.gather(
            *[crm.customers.redeem_link_token(token=created.token, channel="webchat", external_id=chat)
              for chat in chats],
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, LinkTokenUsed) for r in results if isinstance(r, BaseException)), results
        linked = [c for c in chats if (await identity(crm, "webchat", c)).linked_at is not None]
        assert linked == [winners[0].identity.external_id]
        assert (await token_row(crm, created.id)).used_identity_id == winners[0].identity.id
    assert len(bus.of(IdentityLinked)) == 3


async def test_the_same_chat_tapping_twice_at_once_is_linked_once(crm, bus) -> None:
    ann = await crm.customers.create(name="Ann")
    created = await crm.customers.create_link_token(customer_id=ann.id)
    await make_chat(crm, channel="telegram", external_id="77")
    results = await asyncio.gather(
        *[crm.customers.redeem_link_token(token=created.token, channel="telegram", external_id="77")
          for _ in range(3)])
    assert sorted(r.repeated for r in results) == [False, True, True]
    assert {r.customer.id for r in results} == {ann.id}
    assert len(bus.of(IdentityLinked)) == 1


async def test_a_chat_linked_to_someone_else_is_refused_and_the_code_still_works(crm) -> None:
    ann = await crm.customers.create(name="Ann", email="ann@example.com")
    bob = await crm.customers.create(name="Bob", email="bob@example.com")
    await crm.customers.link_identity(channel="telegram", external_id="10", customer_id=ann.id)
    created = await crm.customers.create_link_token(customer_id=bob.id)
    with pytest.raises(ConflictError):
        await crm.customers.redeem_link_token(token=created.token, channel="telegram", external_id="10")
    assert (await crm.customers.get(customer_id=ann.id)).merged_into_id is None
    assert (await token_row(crm, created.id)).used_at is None  # the refused link rolled the claim back
    linked = await crm.customers.redeem_link_token(token=created.token, channel="telegram", external_id="11")
    assert linked.customer.id == bob.id


async def test_a_code_follows_its_customer_into_a_merge(crm) -> None:
    old = await crm.customers.create(name="Ann (old)")
    new = await crm.customers.create(name="Ann", email="ann@example.com")
    created = await crm.customers.create_link_token(customer_id=old.id)
    await crm.customers.merge(source_id=old.id, target_id=new.id)
    linked = await crm.customers.redeem_link_token(token=created.token, channel="webchat", external_id="v-5")
    assert linked.customer.id == new.id


def test_the_cli_prints_the_code_and_how_to_use_it(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from crm_store.crm import CRM
    from crm_store.db import Database
    from crm_store.settings import StoreSettings
    from kefu.cli import app
    from tests.support import RecordingBus

    async def with_crm(use):  # type: ignore[no-untyped-def]
        db = Database(database_url)
        try:
            return await use(CRM(db=db, events=RecordingBus(), settings=StoreSettings(database_url=database_url)))
        finally:
            await db.dispose()

    async def seed(crm: CRM) -> int:
        return (await crm.customers.create(name="Cli Customer")).id

    def redeem(token: str):  # type: ignore[no-untyped-def]
        async def use(crm: CRM) -> int:
            linked = await crm.customers.redeem_link_token(token=token, channel="webchat", external_id="cli")
            return linked.customer.id

        return use

    customer_id = run_blocking(with_crm(seed))
    monkeypatch.setenv("KEFU_DATABASE_URL", database_url)
    monkeypatch.delenv("KEFU_BOT_USERNAME", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["customer", "link-token", "--customer-id", str(customer_id), "--days", "1",
                                 "--bot-username", "@KefuTeaBot"])
    assert result.exit_code == 0, result.output
    token = re.search(r"/link (\S+)", result.output).group(1)  # type: ignore[union-attr]
    assert f"https://t.me/KefuTeaBot?start=link_{token}" in result.output and "Cli Customer" in result.output
    assert run_blocking(with_crm(redeem(token))) == customer_id

    missing = runner.invoke(app, ["customer", "link-token", "--customer-id", "999999"])
    assert missing.exit_code == 1 and "No customer 999999" in missing.output
