"""Console sessions (token hashed, shown once; ended by sign-out, expiry, deactivation or a new password), API tokens
(hashed, shown once, revocable, expiring), agent and team administration (at least one active admin stays) and the
console's run-time settings."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.errors import ConflictError, NotFound
from crm_store.services.agents import PRODUCTION_HASHER, verify_password
from tests.support import make_agent

HOUR = timedelta(hours=1)


async def session_row(crm, session_id: int) -> m.AgentSession:  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as s:
        return (await s.execute(select(m.AgentSession).where(m.AgentSession.id == session_id))).scalar_one()


async def set_session(crm, session_id: int, **values) -> None:  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as s:
        await s.execute(update(m.AgentSession).where(m.AgentSession.id == session_id).values(**values))
        await s.commit()


# --- sessions ---------------------------------------------------------------------------------------------------


async def test_a_session_token_is_random_url_safe_and_only_its_hash_is_stored(crm) -> None:
    agent = await make_agent(crm)
    before = utcnow()
    started = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR, user_agent="Firefox", ip="10.0.0.7")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", started.token) and re.fullmatch(r"[A-Za-z0-9_-]{43,}",
                                                                                 started.csrf_token)
    assert started.agent == agent and before + HOUR <= started.expires_at <= utcnow() + HOUR
    view = await crm.agents.session(token=started.token)
    assert view is not None and view.agent == agent and view.csrf_token == started.csrf_token
    row = await session_row(crm, view.id)
    assert row.token_hash == hashlib.sha256(started.token.encode()).hexdigest()
    assert (row.user_agent, row.ip) == ("Firefox", "10.0.0.7")
    assert started.token not in str(row.__dict__)
    again = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    assert again.token != started.token and again.csrf_token != started.csrf_token


async def test_unknown_empty_and_wrong_tokens_find_no_session(crm) -> None:
    agent = await make_agent(crm)
    started = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    for token in ("", "nope", started.token[:-1], started.token + "x", hashlib.sha256(b"x").hexdigest()):
        assert await crm.agents.session(token=token) is None
    # the stored hash itself is not a token
    row_hash = hashlib.sha256(started.token.encode()).hexdigest()
    assert await crm.agents.session(token=row_hash) is None


async def test_ending_a_session_stops_it_at_once_and_leaves_the_others(crm) -> None:
    agent = await make_agent(crm)
    laptop = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    phone = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    await crm.agents.end_session(token=laptop.token)
    assert await crm.agents.session(token=laptop.token) is None
    assert await crm.agents.session(token=phone.token) is not None
    await crm.agents.end_session(token=laptop.token)  # twice: nothing happens
    await crm.agents.end_session(token="never-issued")


async def test_end_sessions_ends_every_session_of_one_agent_only(crm) -> None:
    ann = await make_agent(crm, email="ann@example.com")
    bo = await make_agent(crm, email="bo@example.com")
    anns = [await crm.agents.start_session(agent_id=ann.id, ttl=HOUR) for _ in range(3)]
    bos = await crm.agents.start_session(agent_id=bo.id, ttl=HOUR)
    assert await crm.agents.end_sessions(agent_id=ann.id) == 3
    assert [await crm.agents.session(token=s.token) for s in anns] == [None, None, None]
    assert await crm.agents.session(token=bos.token) is not None
    assert await crm.agents.end_sessions(agent_id=ann.id) == 0


async def test_an_expired_session_is_refused(crm) -> None:
    agent = await make_agent(crm)
    started = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    view = await crm.agents.session(token=started.token)
    assert view is not None
    await set_session(crm, view.id, expires_at=utcnow() - timedelta(seconds=1))
    assert await crm.agents.session(token=started.token) is None
    with pytest.raises(ValueError, match="positive"):
        await crm.agents.start_session(agent_id=agent.id, ttl=timedelta(0))


async def test_last_seen_is_written_at_most_once_a_minute(crm) -> None:
    agent = await make_agent(crm)
    started = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    view = await crm.agents.session(token=started.token)
    assert view is not None
    first_seen = (await session_row(crm, view.id)).last_seen_at
    await crm.agents.session(token=started.token)
    assert (await session_row(crm, view.id)).last_seen_at == first_seen  # within the minute: no write
    long_ago = utcnow() - timedelta(minutes=5)
    await set_session(crm, view.id, last_seen_at=long_ago)
    before = utcnow()
    touched = await crm.agents.session(token=started.token)
    assert touched is not None and touched.last_seen_at >= before
    assert (await session_row(crm, view.id)).last_seen_at >= before


async def test_a_deactivated_agent_loses_every_session_and_cannot_start_one(crm) -> None:
    admin = await make_agent(crm, email="admin@example.com", role="admin")
    agent = await make_agent(crm)
    started = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    updated = await crm.agents.update_agent(agent_id=agent.id, active=False)
    assert updated.active is False
    assert await crm.agents.session(token=started.token) is None
    with pytest.raises(ConflictError):
        await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    # reactivated: the old session stays ended
    await crm.agents.update_agent(agent_id=agent.id, active=True)
    assert await crm.agents.session(token=started.token) is None
    assert await crm.agents.session(token=(await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)).token)
    assert (await crm.agents.get_agent(agent_id=admin.id)).active


async def test_an_agent_deactivated_behind_the_services_back_has_no_session(crm) -> None:
    agent = await make_agent(crm)
    started = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    async with crm.db.sessionmaker() as s:
        await s.execute(update(m.Agent).where(m.Agent.id == agent.id).values(active=False))
        await s.commit()
    assert await crm.agents.session(token=started.token) is None


async def test_a_session_shows_the_agents_current_role(crm) -> None:
    await make_agent(crm, email="admin@example.com", role="admin")
    agent = await make_agent(crm)
    started = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    await crm.agents.update_agent(agent_id=agent.id, role="supervisor")
    view = await crm.agents.session(token=started.token)
    assert view is not None and view.agent.role == "supervisor"


async def test_a_new_password_replaces_the_old_and_ends_the_sessions(crm) -> None:
    agent = await make_agent(crm)
    started = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    await crm.agents.set_password(agent_id=agent.id, password="a brand new one")
    assert await crm.agents.session(token=started.token) is None
    assert await crm.agents.authenticate(email=agent.email, password="correct horse") is None
    assert await crm.agents.authenticate(email=agent.email, password="a brand new one") == agent
    with pytest.raises(ValueError, match="8 characters"):
        await crm.agents.set_password(agent_id=agent.id, password="short")
    with pytest.raises(NotFound):
        await crm.agents.set_password(agent_id=9999, password="long enough")


async def test_old_ended_sessions_are_purged_at_the_next_sign_in(crm) -> None:
    agent = await make_agent(crm)
    old = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    recent = await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    old_view, recent_view = (await crm.agents.session(token=old.token), await crm.agents.session(token=recent.token))
    assert old_view and recent_view
    await set_session(crm, old_view.id, expires_at=utcnow() - timedelta(days=40))
    await crm.agents.start_session(agent_id=agent.id, ttl=HOUR)
    async with crm.db.sessionmaker() as s:
        ids = set((await s.execute(select(m.AgentSession.id))).scalars())
    assert old_view.id not in ids and recent_view.id in ids


# --- agents and teams -------------------------------------------------------------------------------------------


async def test_update_agent_changes_only_what_is_given(crm) -> None:
    team = await crm.agents.create_team(name="Wholesale")
    agent = await make_agent(crm, name="Lin")
    moved = await crm.agents.update_agent(agent_id=agent.id, team_id=team)
    assert (moved.team_id, moved.role, moved.name, moved.active) == (team, "agent", "Lin", True)
    renamed = await crm.agents.update_agent(agent_id=agent.id, name="  Lin Mei ")
    assert (renamed.name, renamed.team_id) == ("Lin Mei", team)
    out = await crm.agents.update_agent(agent_id=agent.id, team_id=None)
    assert out.team_id is None and await crm.agents.get_agent(agent_id=agent.id) == out
    with pytest.raises(NotFound):
        await crm.agents.update_agent(agent_id=agent.id, team_id=12345)
    with pytest.raises(NotFound):
        await crm.agents.update_agent(agent_id=12345, name="x")
    with pytest.raises(NotFound):
        await crm.agents.get_agent(agent_id=12345)
    with pytest.raises(ValueError):
        await crm.agents.update_agent(agent_id=agent.id, role="owner")
    with pytest.raises(ValueError):
        await crm.agents.update_agent(agent_id=agent.id, name="  ")
    with pytest.raises(NotFound):
        await crm.agents.create_agent(email="new@example.com", name="N", password="long enough", team_id=12345)


async def test_the_last_active_admin_can_be_neither_demoted_nor_deactivated(crm) -> None:
    root = await make_agent(crm, email="root@example.com", role="admin")
    with pytest.raises(ConflictError, match="admin"):
        await crm.agents.update_agent(agent_id=root.id, role="supervisor")
    with pytest.raises(ConflictError, match="admin"):
        await crm.agents.update_agent(agent_id=root.id, active=False)
    second = await make_agent(crm, email="second@example.com", role="admin")
    assert (await crm.agents.update_agent(agent_id=root.id, role="supervisor")).role == "supervisor"
    with pytest.raises(ConflictError):
        await crm.agents.update_agent(agent_id=second.id, active=False)
    assert (await crm.agents.update_agent(agent_id=second.id, name="Still admin")).role == "admin"


async def test_teams_are_listed_with_their_active_members_and_renamed_uniquely(crm) -> None:
    care = await crm.agents.create_team(name="Customer Care", description="Everyday customers")
    wholesale = await crm.agents.create_team(name="Wholesale")
    await crm.agents.create_agent(email="a@example.com", name="A", password="long enough", team_id=care)
    b = await crm.agents.create_agent(email="b@example.com", name="B", password="long enough", team_id=care)
    await crm.agents.update_agent(agent_id=b.id, active=False)
    teams = await crm.agents.list_teams()
    assert [(t.name, t.members) for t in teams] == [("Customer Care", 1), ("Wholesale", 0)]
    assert teams[0].description == "Everyday customers"
    renamed = await crm.agents.update_team(team_id=wholesale, name="Tea houses", description="Bulk buyers")
    assert (renamed.name, renamed.description, renamed.members) == ("Tea houses", "Bulk buyers", 0)
    with pytest.raises(ConflictError):
        await crm.agents.update_team(team_id=wholesale, name="Customer Care")
    with pytest.raises(ValueError):
        await crm.agents.update_team(team_id=wholesale, name=" ")
    with pytest.raises(NotFound):
        await crm.agents.update_team(team_id=999, name="x")


# --- API tokens -------------------------------------------------------------------------------------------------


async def test_an_api_token_is_shown_once_hashed_and_recognised_by_its_prefix(crm) -> None:
    admin = await make_agent(crm, role="admin")
    created = await crm.agents.create_api_token(name="Helpdesk sync", scopes=["tickets:read", "tickets:read",
                                                                              "messages:write"],
                                                created_by_agent_id=admin.id)
    assert created.token.startswith("kefu_") and len(created.token) >= 40
    view = created.view
    assert (view.name, view.scopes, view.created_by_agent_id) == ("Helpdesk sync", ("messages:write", "tickets:read"),
                                                                  admin.id)
    assert created.token.startswith(view.prefix) and len(view.prefix) == 12
    async with crm.db.sessionmaker() as s:
        row = (await s.execute(select(m.ApiToken))).scalar_one()
    assert row.token_hash == hashlib.sha256(created.token.encode()).hexdigest()
    assert view.last_used_at is None
    used = await crm.agents.api_token(token=created.token)
    assert used is not None and used.id == view.id and used.last_used_at is not None
    for wrong in ("", created.token[:-1], "kefu_nope", row.token_hash, created.token.removeprefix("kefu_")):
        assert await crm.agents.api_token(token=wrong) is None
    assert [t.id for t in await crm.agents.list_api_tokens()] == [view.id]


async def test_revoked_and_expired_api_tokens_are_refused(crm) -> None:
    kept = await crm.agents.create_api_token(name="kept", scopes=["kb:read"], created_by_agent_id=None)
    revoked = await crm.agents.create_api_token(name="revoked", scopes=["kb:read"], created_by_agent_id=None)
    expiring = await crm.agents.create_api_token(name="expiring", scopes=["kb:read"], created_by_agent_id=None,
                                                 expires_at=utcnow() + HOUR)
    gone = await crm.agents.revoke_api_token(token_id=revoked.view.id)
    assert gone.revoked_at is not None and not gone.active_at(utcnow())
    assert (await crm.agents.revoke_api_token(token_id=revoked.view.id)).revoked_at == gone.revoked_at
    assert await crm.agents.api_token(token=revoked.token) is None
    assert await crm.agents.api_token(token=expiring.token) is not None
    async with crm.db.sessionmaker() as s:
        await s.execute(update(m.ApiToken).where(m.ApiToken.id == expiring.view.id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    assert await crm.agents.api_token(token=expiring.token) is None
    assert await crm.agents.api_token(token=kept.token) is not None
    listed = await crm.agents.list_api_tokens()
    assert [t.name for t in listed] == ["expiring", "revoked", "kept"]  # newest first, all kept for the record
    with pytest.raises(NotFound):
        await crm.agents.revoke_api_token(token_id=999)


async def test_an_api_token_needs_a_name_valid_scopes_and_a_future_expiry(crm) -> None:
    for kwargs in ({"name": " ", "scopes": ["kb:read"]}, {"name": "x", "scopes": []},
                   {"name": "x", "scopes": ["everything"]}, {"name": "x", "scopes": ["kb:read", "KB READ"]},
                   {"name": "x", "scopes": ["kb:read"], "expires_at": utcnow() - HOUR}):
        with pytest.raises(ValueError):
            await crm.agents.create_api_token(created_by_agent_id=None, **kwargs)
    assert await crm.agents.list_api_tokens() == []


# --- settings ---------------------------------------------------------------------------------------------------


async def test_settings_hold_json_values_and_who_changed_them(crm) -> None:
    admin = await make_agent(crm, role="admin")
    assert await crm.app_settings.get_setting("assignment.strategy", "off") == "off"
    first = await crm.app_settings.set_setting("assignment.strategy", "round_robin", by_agent_id=admin.id)
    assert (first.key, first.value, first.updated_by_agent_id) == ("assignment.strategy", "round_robin", admin.id)
    assert await crm.app_settings.get_setting("assignment.strategy", "off") == "round_robin"
    second = await crm.app_settings.set_setting("assignment.strategy", "least_loaded", by_agent_id=None)
    assert second.updated_at >= first.updated_at and second.updated_by_agent_id is None
    await crm.app_settings.set_setting("sla.business_hours", {"from": "09:00", "days": [1, 2, 3]}, by_agent_id=None)
    assert await crm.app_settings.get_setting("sla.business_hours") == {"from": "09:00", "days": [1, 2, 3]}
    assert [s.key for s in await crm.app_settings.list_settings()] == ["assignment.strategy", "sla.business_hours"]
    with pytest.raises(ValueError):
        await crm.app_settings.set_setting("x", None, by_agent_id=None)


async def test_verify_password_refuses_garbage_hashes() -> None:
    assert verify_password("not-a-hash", "whatever") is False


def test_passwords_are_hashed_in_production_with_argon2id_at_full_cost() -> None:
    """The suite hashes cheaply (tests/conftest.py); what deployments use is at least OWASP's argon2id minimum."""
    from argon2 import Type, extract_parameters

    assert PRODUCTION_HASHER.type is Type.ID
    assert PRODUCTION_HASHER.memory_cost >= 19 * 1024 and PRODUCTION_HASHER.time_cost >= 2
    stored = extract_parameters(PRODUCTION_HASHER.hash("correct horse"))
    assert (stored.memory_cost, stored.time_cost) == (PRODUCTION_HASHER.memory_cost, PRODUCTION_HASHER.time_cost)
