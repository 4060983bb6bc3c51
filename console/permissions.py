"""Who may do what in the console: one explicit matrix, enforced on the server by every route's `require(...)`.

Agents work their own and their team's tickets, see customers and make link codes for them, and read the KB;
supervisors see everything, reassign, adjust loyalty points, author surveys, courses, KB articles and customer
segments, send campaigns to segments, merge duplicate customers, and see analytics; admins can do all of that and
manage agents, teams, API tokens and settings, export and erase customers' data, and read the audit log."""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends

from console.security import Forbidden, SignedIn, csrf_checked
from crm_store.enums import AgentRole


class Permission(StrEnum):
    CONSOLE_USE = "console.use"  # signed in at all: sign out, see one's own profile
    TICKETS_WORK = "tickets.work"  # the inbox: own and own team's tickets
    TICKETS_VIEW_ALL = "tickets.view_all"  # every ticket, whoever holds it
    TICKETS_REASSIGN = "tickets.reassign"
    CUSTOMERS_VIEW = "customers.view"
    CUSTOMERS_LINK = "customers.link"  # make a one-time code that links a customer's chat to their record
    CUSTOMERS_MERGE = "customers.merge"  # find duplicate customers and merge them into the record that stays
    LOYALTY_ADJUST = "loyalty.adjust"  # add or take points by hand, with a reason (it goes to the ledger)
    KB_READ = "kb.read"
    KB_EDIT = "kb.edit"
    SURVEYS_MANAGE = "surveys.manage"
    COURSES_MANAGE = "courses.manage"
    SEGMENTS_MANAGE = "segments.manage"  # saved groups of customers by rule (who a campaign reaches)
    CAMPAIGNS_MANAGE = "campaigns.manage"  # surveys, course invitations and messages sent to a segment
    ANALYTICS_VIEW = "analytics.view"
    AGENTS_MANAGE = "agents.manage"
    TEAMS_MANAGE = "teams.manage"
    API_TOKENS_MANAGE = "api_tokens.manage"
    SETTINGS_MANAGE = "settings.manage"
    PRIVACY_MANAGE = "privacy.manage"  # export a customer's data, erase a customer, see erasure requests
    AUDIT_VIEW = "audit.view"  # read the audit log


_AGENT = frozenset({
    Permission.CONSOLE_USE, Permission.TICKETS_WORK, Permission.CUSTOMERS_VIEW, Permission.CUSTOMERS_LINK,
    Permission.KB_READ,
})
_SUPERVISOR = _AGENT | {
    Permission.TICKETS_VIEW_ALL, Permission.TICKETS_REASSIGN, Permission.KB_EDIT, Permission.SURVEYS_MANAGE,
    Permission.COURSES_MANAGE, Permission.ANALYTICS_VIEW, Permission.LOYALTY_ADJUST,
    Permission.SEGMENTS_MANAGE, Permission.CUSTOMERS_MERGE,
    Permission.CAMPAIGNS_MANAGE,
}
_ADMIN = _SUPERVISOR | {
    Permission.AGENTS_MANAGE, Permission.TEAMS_MANAGE, Permission.API_TOKENS_MANAGE, Permission.SETTINGS_MANAGE,
    Permission.PRIVACY_MANAGE, Permission.AUDIT_VIEW,
}

ROLE_PERMISSIONS: dict[AgentRole, frozenset[Permission]] = {
    AgentRole.AGENT: _AGENT,
    AgentRole.SUPERVISOR: _SUPERVISOR,
    AgentRole.ADMIN: _ADMIN,
}


def permissions_of(role: str) -> frozenset[Permission]:
    """What a role may do; an unknown role may do nothing."""
    try:
        return ROLE_PERMISSIONS[AgentRole(role)]
    except ValueError:
        return frozenset()


def allows(role: str, permission: Permission) -> bool:
    return permission in permissions_of(role)


# Scopes an admin can give an API token (the REST API checks them on each call).
API_SCOPES: dict[str, str] = {
    "tickets:read": "Read tickets and conversations",
    "tickets:write": "Reply to, assign and resolve tickets",
    "customers:read": "Read customers and their timeline",
    "customers:write": "Create and update customers",
    "kb:read": "Read knowledge-base articles",
    "kb:write": "Create and update knowledge-base articles",
}


class ApiScope(StrEnum):
    """A scope a REST API route requires of the caller's token (`console.api.auth.require_scope`)."""

    TICKETS_READ = "tickets:read"
    TICKETS_WRITE = "tickets:write"
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    KB_READ = "kb:read"
    KB_WRITE = "kb:write"


@functools.cache
def require(permission: Permission) -> Any:
    """The dependency of a console route: a signed-in agent whose role has `permission` (else 403) and who, for an
    unsafe method, sent the session's CSRF token (else 403). Use as `agent: Annotated[SignedIn, require(P)]` or in
    `dependencies=[require(P)]`; `route_permission` finds it, so a test can prove every route declares one."""

    async def guard(signed: Annotated[SignedIn, Depends(csrf_checked)]) -> SignedIn:
        if permission not in permissions_of(signed.agent.role):
            raise Forbidden()
        return signed

    guard.permission = permission  # type: ignore[attr-defined]
    guard.__name__ = f"require_{permission.name.lower()}"
    return Depends(guard)


def route_permission(route: Any) -> Permission | ApiScope | None:
    """The permission (or, for the REST API, the token scope) a route's dependencies require (searched through
    sub-dependencies), or None."""
    dependant = getattr(route, "dependant", None)
    pending = [dependant] if dependant is not None else []
    while pending:
        dependant = pending.pop()
        found = getattr(dependant.call, "permission", None)
        if isinstance(found, Permission | ApiScope):
            return found
        pending.extend(dependant.dependencies)
    return None
