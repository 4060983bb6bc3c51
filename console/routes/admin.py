"""Administration (admins only): agents, teams, API tokens and settings. Plain forms, post/redirect/get; a refused
change re-renders the page with the reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.permissions import API_SCOPES, Permission, require
from console.security import SignedIn
from console.web import redirect, render
from crm_store.coltypes import utcnow
from crm_store.enums import AgentRole
from crm_store.errors import DomainError, NotFound
from crm_store.services.agents import KEEP
from crm_store.services.assignment import OFF, STRATEGIES, STRATEGY_KEY

router = APIRouter(prefix="/admin")

Agents = Annotated[SignedIn, require(Permission.AGENTS_MANAGE)]
Teams = Annotated[SignedIn, require(Permission.TEAMS_MANAGE)]
Tokens = Annotated[SignedIn, require(Permission.API_TOKENS_MANAGE)]
Settings = Annotated[SignedIn, require(Permission.SETTINGS_MANAGE)]
FormStr = Annotated[str, Form()]
OptionalFormStr = Annotated[str | None, Form()]

# Shown after a redirect (?notice=...): fixed texts, never anything taken from the request.
NOTICES = {
    "agent-created": "Agent created. They can sign in now.",
    "agent-updated": "Agent updated.",
    "password-reset": "Password changed; the agent's sessions were ended.",
    "team-created": "Team created.",
    "team-updated": "Team updated.",
    "token-revoked": "Token revoked. Requests with it are refused from now on.",
    "settings-saved": "Settings saved.",
}
STRATEGY_TEXT = {
    "off": ("Off", "New tickets wait in the team's queue until an agent takes one."),
    "round_robin": ("Round robin", "Each new ticket goes to the team's agent who was given one longest ago."),
    "least_loaded": ("Least loaded", "Each new ticket goes to the team's agent with the fewest open tickets."),
}
TOKEN_LIFETIMES = {"": "Never", "30": "30 days", "90": "90 days", "365": "1 year"}


def notice_of(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def not_found(request: Request, what: str) -> Response:
    return render(request, "error.html", status_code=404, title="Not found", message=f"There is no such {what}.")


def team_choice(value: str | None) -> int | None:
    """A team select's value: "none" is no team (an empty field would read as "not sent")."""
    if not value or value == "none":
        return None
    if not value.isdigit():
        raise ValueError("Choose a team from the list.")
    return int(value)


def role_choice(value: str) -> AgentRole:
    try:
        return AgentRole(value)
    except ValueError:
        raise ValueError("Choose a role from the list.") from None


@router.get("")
async def admin_home(_: Agents) -> Response:
    return redirect("/admin/agents")


# --- agents -----------------------------------------------------------------------------------------------------


async def agents_page(request: Request, console: Console, *, status_code: int = 200, error: str | None = None,
                      draft: dict[str, Any] | None = None) -> Response:
    return render(request, "admin/agents.html", status_code=status_code, error=error, notice=notice_of(request),
                  agents=await console.crm.agents.list_agents(), teams=await console.crm.agents.list_teams(),
                  roles=list(AgentRole), draft=draft or {"email": "", "name": "", "role": "agent", "team_id": "none"})


@router.get("/agents")
async def list_agents(request: Request, console: ConsoleDep, _: Agents) -> Response:
    return await agents_page(request, console)


@router.post("/agents")
async def create_agent(request: Request, console: ConsoleDep, admin: Agents, email: FormStr = "", name: FormStr = "",
                       role: FormStr = "agent", team_id: FormStr = "", password: FormStr = "") -> Response:
    draft = {"email": email, "name": name, "role": role, "team_id": team_id}
    try:
        await console.crm.agents.create_agent(email=email, name=name.strip(), password=password,
                                              role=role_choice(role), team_id=team_choice(team_id),
                                              by_agent_id=admin.agent.id)
    except (ValueError, DomainError) as exc:
        return await agents_page(request, console, status_code=400, error=str(exc), draft=draft)
    return redirect("/admin/agents?notice=agent-created")


@router.post("/agents/{agent_id}")
async def update_agent(request: Request, console: ConsoleDep, admin: Agents, agent_id: int,
                       role: OptionalFormStr = None, team_id: OptionalFormStr = None,
                       active: OptionalFormStr = None, name: OptionalFormStr = None) -> Response:
    try:
        target = await console.crm.agents.get_agent(agent_id=agent_id)
        new_role = role_choice(role) if role is not None else None
        new_active = None if active is None else active == "yes"
        if agent_id == admin.agent.id and ((new_role and new_role != target.role) or new_active is False):
            raise ValueError("You cannot change your own role or deactivate yourself; ask another admin.")
        await console.crm.agents.update_agent(agent_id=agent_id, role=new_role, active=new_active, name=name,
                                              team_id=KEEP if team_id is None else team_choice(team_id),
                                              by_agent_id=admin.agent.id)
    except NotFound:
        return not_found(request, "agent")
    except (ValueError, DomainError) as exc:
        return await agents_page(request, console, status_code=400, error=str(exc))
    return redirect("/admin/agents?notice=agent-updated")


@router.post("/agents/{agent_id}/password")
async def reset_password(request: Request, console: ConsoleDep, admin: Agents, agent_id: int,
                         password: FormStr = "") -> Response:
    try:
        await console.crm.agents.set_password(agent_id=agent_id, password=password, by_agent_id=admin.agent.id)
    except NotFound:
        return not_found(request, "agent")
    except ValueError as exc:
        return await agents_page(request, console, status_code=400, error=str(exc))
    return redirect("/admin/agents?notice=password-reset")


# --- teams ------------------------------------------------------------------------------------------------------


async def teams_page(request: Request, console: Console, *, status_code: int = 200,
                     error: str | None = None) -> Response:
    return render(request, "admin/teams.html", status_code=status_code, error=error, notice=notice_of(request),
                  teams=await console.crm.agents.list_teams())


@router.get("/teams")
async def list_teams(request: Request, console: ConsoleDep, _: Teams) -> Response:
    return await teams_page(request, console)


@router.post("/teams")
async def create_team(request: Request, console: ConsoleDep, _: Teams, name: FormStr = "",
                      description: FormStr = "") -> Response:
    name = name.strip()
    if not name or len(name) > 100:
        return await teams_page(request, console, status_code=400, error="A team needs a name (up to 100 characters).")
    if any(team.name == name for team in await console.crm.agents.list_teams()):
        return await teams_page(request, console, status_code=400, error=f"A team named {name} exists already.")
    await console.crm.agents.create_team(name=name, description=description.strip())
    return redirect("/admin/teams?notice=team-created")


@router.post("/teams/{team_id}")
async def update_team(request: Request, console: ConsoleDep, _: Teams, team_id: int, name: OptionalFormStr = None,
                      description: OptionalFormStr = None) -> Response:
    try:
        await console.crm.agents.update_team(team_id=team_id, name=name, description=description)
    except NotFound:
        return not_found(request, "team")
    except (ValueError, DomainError) as exc:
        return await teams_page(request, console, status_code=400, error=str(exc))
    return redirect("/admin/teams?notice=team-updated")


# --- API tokens -------------------------------------------------------------------------------------------------


async def tokens_page(request: Request, console: Console, *, status_code: int = 200, error: str | None = None,
                      created: Any = None) -> Response:
    return render(request, "admin/tokens.html", status_code=status_code, error=error, notice=notice_of(request),
                  tokens=await console.crm.agents.list_api_tokens(), scopes=API_SCOPES, lifetimes=TOKEN_LIFETIMES,
                  created=created, now=utcnow())


@router.get("/tokens")
async def list_tokens(request: Request, console: ConsoleDep, _: Tokens) -> Response:
    return await tokens_page(request, console)


@router.post("/tokens")
async def create_token(request: Request, console: ConsoleDep, admin: Tokens, name: FormStr = "",
                       scopes: Annotated[list[str], Form()] = [], expires_in_days: FormStr = "") -> Response:  # noqa: B006
    if unknown := [s for s in scopes if s not in API_SCOPES]:
        return await tokens_page(request, console, status_code=400, error=f"Unknown scope: {unknown[0]}.")
    if expires_in_days not in TOKEN_LIFETIMES:
        return await tokens_page(request, console, status_code=400, error="Choose a lifetime from the list.")
    expires_at = utcnow() + timedelta(days=int(expires_in_days)) if expires_in_days else None
    try:
        created = await console.crm.agents.create_api_token(name=name, scopes=scopes, expires_at=expires_at,
                                                            created_by_agent_id=admin.agent.id)
    except ValueError:
        return await tokens_page(request, console, status_code=400,
                                 error="A token needs a name and at least one scope.")
    # The plaintext is shown on this response only (not cached: every console page is no-store).
    return await tokens_page(request, console, status_code=201, created=created)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, console: ConsoleDep, admin: Tokens, token_id: int) -> Response:
    try:
        await console.crm.agents.revoke_api_token(token_id=token_id, by_agent_id=admin.agent.id)
    except NotFound:
        return not_found(request, "API token")
    return redirect("/admin/tokens?notice=token-revoked")


# --- settings ---------------------------------------------------------------------------------------------------


async def settings_page(request: Request, console: Console, *, status_code: int = 200,
                        error: str | None = None) -> Response:
    strategy = await console.crm.app_settings.get_setting(STRATEGY_KEY, OFF)
    return render(request, "admin/settings.html", status_code=status_code, notice=notice_of(request), error=error,
                  strategy=strategy if strategy in STRATEGIES else OFF, strategies=STRATEGY_TEXT)


@router.get("/settings")
async def show_settings(request: Request, console: ConsoleDep, _: Settings) -> Response:
    return await settings_page(request, console)


@router.post("/settings")
async def save_settings(request: Request, console: ConsoleDep, admin: Settings,
                        assignment_strategy: FormStr = "") -> Response:
    if assignment_strategy not in STRATEGIES:
        return await settings_page(request, console, status_code=400,
                                   error="Choose an assignment strategy from the list.")
    await console.crm.app_settings.set_setting(STRATEGY_KEY, assignment_strategy, by_agent_id=admin.agent.id)
    return redirect("/admin/settings?notice=settings-saved")
