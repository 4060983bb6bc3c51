"""The admin pages, as an admin uses them: agents (create, role, team, status, password), teams, API tokens (shown
once, revocable) and the assignment setting; refusals re-render the page with the reason; names are escaped."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.console.conftest import BASE, csrf_of, session_for, sign_in


@pytest.fixture
async def admin(client, crm, staff):  # type: ignore[no-untyped-def]
    """The test's client, signed in as the admin; returns a poster that adds the CSRF token."""
    csrf = await session_for(crm, staff.admin, client)

    async def post(path: str, **data: object) -> httpx.Response:
        return await client.post(path, data={"csrf_token": csrf, **data})

    return post


async def test_an_admin_creates_an_agent_who_can_then_sign_in(client, crm, staff, admin) -> None:
    response = await admin("/admin/agents", email="Wu@Example.com", name="Wu Fang", role="supervisor",
                           team_id=str(staff.team_id), password="green-tea-42")
    assert response.status_code == 303 and response.headers["location"] == "/admin/agents?notice=agent-created"
    page = await client.get(response.headers["location"])
    assert "Agent created." in page.text and "wu@example.com" in page.text
    (wu,) = [a for a in await crm.agents.list_agents() if a.email == "wu@example.com"]
    assert (wu.name, wu.role, wu.team_id, wu.active) == ("Wu Fang", "supervisor", staff.team_id, True)
    async with httpx.AsyncClient(transport=client._transport, base_url=BASE) as other:
        assert (await sign_in(other, "wu@example.com", "green-tea-42")).status_code == 303


@pytest.mark.parametrize(("fields", "message"), [
    ({"email": "agent@example.com", "password": "long enough"}, "exists already"),
    ({"email": "new@example.com", "password": "short"}, "at least 8 characters"),
    ({"email": "not-an-email", "password": "long enough"}, "Not an e-mail address"),
    ({"email": "new@example.com", "password": "long enough", "role": "owner"}, "Choose a role"),
    ({"email": "new@example.com", "password": "long enough", "team_id": "999"}, "No team 999"),
    ({"email": "new@example.com", "password": "long enough", "team_id": "x"}, "Choose a team"),
])
async def test_a_refused_agent_is_explained_and_the_form_kept(client, crm, staff, admin, fields, message) -> None:
    response = await admin("/admin/agents", name="Keep Me", **fields)
    assert response.status_code == 400 and message in response.text
    assert 'value="Keep Me"' in response.text
    assert len(await crm.agents.list_agents()) == 3


async def test_an_admin_changes_an_agents_role_team_name_and_status(client, crm, staff, admin) -> None:
    other_team = await crm.agents.create_team(name="Wholesale")
    response = await admin(f"/admin/agents/{staff.agent.id}", role="supervisor", team_id=str(other_team),
                           name="Lin Mei", active="yes")
    assert response.headers["location"] == "/admin/agents?notice=agent-updated"
    agent = await crm.agents.get_agent(agent_id=staff.agent.id)
    assert (agent.role, agent.team_id, agent.name, agent.active) == ("supervisor", other_team, "Lin Mei", True)
    await admin(f"/admin/agents/{staff.agent.id}", team_id="none", active="no")
    agent = await crm.agents.get_agent(agent_id=staff.agent.id)
    assert (agent.team_id, agent.active, agent.role) == (None, False, "supervisor")
    page = (await client.get("/admin/agents")).text
    row = re.search(rf'<tr class="inactive">.*?agent-{agent.id}.*?</tr>', page, re.S)
    assert row and '<option value="no" selected>Deactivated</option>' in row.group(0)
    assert (await admin("/admin/agents/999", name="x")).status_code == 404


async def test_an_admin_cannot_demote_or_deactivate_themselves(client, crm, staff, admin) -> None:
    for change in ({"role": "agent"}, {"active": "no"}):
        response = await admin(f"/admin/agents/{staff.admin.id}", **change)
        assert response.status_code == 400 and "ask another admin" in response.text
    me = await crm.agents.get_agent(agent_id=staff.admin.id)
    assert (me.role, me.active) == ("admin", True)
    # saving one's own row unchanged (role and status as they are) is fine
    response = await admin(f"/admin/agents/{staff.admin.id}", role="admin", active="yes", name="Root")
    assert response.status_code == 303 and (await crm.agents.get_agent(agent_id=staff.admin.id)).name == "Root"


async def test_resetting_a_password_ends_the_agents_sessions(client, crm, staff, admin) -> None:
    async with httpx.AsyncClient(transport=client._transport, base_url=BASE) as agent:
        await sign_in(agent, "agent@example.com")
        assert (await agent.get("/inbox")).status_code == 200
        response = await admin(f"/admin/agents/{staff.agent.id}/password", password="brand-new-pass")
        assert response.headers["location"] == "/admin/agents?notice=password-reset"
        assert (await agent.get("/inbox")).status_code == 303
        assert (await sign_in(agent, "agent@example.com", "brand-new-pass")).status_code == 303
    refused = await admin(f"/admin/agents/{staff.agent.id}/password", password="short")
    assert refused.status_code == 400 and "at least 8 characters" in refused.text
    assert (await admin("/admin/agents/999/password", password="long enough")).status_code == 404


async def test_teams_are_created_and_renamed_uniquely(client, crm, staff, admin) -> None:
    response = await admin("/admin/teams", name="Wholesale", description="Tea houses and cafés")
    assert response.headers["location"] == "/admin/teams?notice=team-created"
    assert (await admin("/admin/teams", name="Wholesale")).status_code == 400
    assert (await admin("/admin/teams", name="  ")).status_code == 400
    teams = {t.name: t for t in await crm.agents.list_teams()}
    assert teams["Wholesale"].description == "Tea houses and cafés" and teams["Care"].members == 3
    renamed = await admin(f"/admin/teams/{teams['Wholesale'].id}", name="Bulk", description="Cafés")
    assert renamed.headers["location"] == "/admin/teams?notice=team-updated"
    clash = await admin(f"/admin/teams/{teams['Wholesale'].id}", name="Care")
    assert clash.status_code == 400 and "exists already" in clash.text
    page = (await client.get("/admin/teams")).text
    assert 'value="Bulk"' in page and 'value="Cafés"' in page
    assert (await admin("/admin/teams/999", name="x")).status_code == 404


async def test_an_api_token_is_shown_once_then_only_its_prefix(client, crm, staff, admin) -> None:
    response = await admin("/admin/tokens", name="Order sync", scopes=["tickets:read", "kb:read"],
                           expires_in_days="90")
    assert response.status_code == 201 and "shown only this once" in response.text
    token = re.search(r'<code id="new-token">(kefu_[A-Za-z0-9_-]+)</code>', response.text).group(1)  # type: ignore[union-attr]
    view = await crm.agents.api_token(token=token)
    assert view is not None and view.scopes == ("kb:read", "tickets:read") and view.expires_at is not None
    assert view.created_by_agent_id == staff.admin.id
    listing = (await client.get("/admin/tokens")).text
    assert token not in listing and f"{view.prefix}…" in listing and "Order sync" in listing
    revoked = await admin(f"/admin/tokens/{view.id}/revoke")
    assert revoked.headers["location"] == "/admin/tokens?notice=token-revoked"
    assert await crm.agents.api_token(token=token) is None
    assert "Revoked" in (await client.get("/admin/tokens")).text
    assert (await admin("/admin/tokens/999/revoke")).status_code == 404


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": "x"}, "at least one scope"),
    ({"name": "", "scopes": ["kb:read"]}, "needs a name"),
    ({"name": "x", "scopes": ["root:all"]}, "Unknown scope"),
    ({"name": "x", "scopes": ["kb:read"], "expires_in_days": "7000"}, "lifetime"),
])
async def test_a_refused_token_is_explained(client, crm, staff, admin, fields, message) -> None:
    response = await admin("/admin/tokens", **fields)
    assert response.status_code == 400 and message in response.text
    assert await crm.agents.list_api_tokens() == []


async def test_the_assignment_strategy_is_saved_as_an_app_setting(client, crm, staff, admin) -> None:
    page = (await client.get("/admin/settings")).text
    assert re.search(r'value="off"\s+checked', page)
    response = await admin("/admin/settings", assignment_strategy="least_loaded")
    assert response.headers["location"] == "/admin/settings?notice=settings-saved"
    assert await crm.app_settings.get_setting("assignment.strategy") == "least_loaded"
    page = (await client.get("/admin/settings?notice=settings-saved")).text
    assert re.search(r'value="least_loaded"\s+checked', page) and "Settings saved." in page
    refused = await admin("/admin/settings", assignment_strategy="random")
    assert refused.status_code == 400 and await crm.app_settings.get_setting("assignment.strategy") == "least_loaded"


async def test_names_are_rendered_escaped(client, crm, staff, admin) -> None:
    script = "<script>alert(1)</script>"
    await admin("/admin/agents", email="x@example.com", name=script, password="long enough")
    await admin("/admin/teams", name=f"Team {script}", description='" onmouseover="alert(2)')
    for path in ("/admin/agents", "/admin/teams"):
        page = (await client.get(path)).text
        assert script not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert 'onmouseover="alert(2)' not in page
    # a notice is a fixed text: nothing from the query string is echoed
    page = (await client.get(f"/admin/agents?notice={script}")).text
    assert script not in page


async def test_the_admin_pages_carry_the_csrf_token_in_every_form(client, staff, admin) -> None:
    for path in ("/admin/agents", "/admin/teams", "/admin/tokens", "/admin/settings"):
        page = (await client.get(path)).text
        forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", page, re.S)
        assert forms and all(f'name="csrf_token" value="{csrf_of(page)}"' in form for form in forms), path
