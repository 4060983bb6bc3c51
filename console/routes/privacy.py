"""Privacy and audit, for admins: a customer's data exported (JSON, or CSV files in a zip) or erased, customers'
erasure requests from the chat, and the audit log with its filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response

from console.context import ConsoleDep
from console.permissions import Permission, require
from console.routes.customers import customer_page
from console.security import SignedIn, client_ip
from console.web import redirect, render, with_security_headers
from crm_store.enums import AuditAction
from crm_store.errors import DomainError, NotFound

router = APIRouter()

Privacy = Annotated[SignedIn, require(Permission.PRIVACY_MANAGE)]
Auditor = Annotated[SignedIn, require(Permission.AUDIT_VIEW)]
CustomerId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PAGE_SIZE = 50
FORMATS = {"json": ("application/json", "json"), "csv": ("application/zip", "csv.zip")}
ACTION_FAMILIES = ("login", "customer", "points", "agent", "setting", "token", "glossary", "kb")


def _not_found(request: Request) -> Response:
    return render(request, "error.html", status_code=404, title="Not found", message="There is no such customer.")


@router.get("/customers/{customer_id}/export.{file_format}")
async def export_customer(request: Request, console: ConsoleDep, signed: Privacy, customer_id: CustomerId,
                          file_format: str) -> Response:
    if file_format not in FORMATS:
        return render(request, "error.html", status_code=404, title="Not found",
                      message="Exports come as .json or .csv (a zip of CSV files).")
    try:
        export = await console.crm.privacy.export(customer_id=customer_id, agent_id=signed.agent.id,
                                                  actor_label=signed.agent.email, ip=client_ip(request),
                                                  file_format=file_format)
    except NotFound:
        return _not_found(request)
    media_type, suffix = FORMATS[file_format]
    body = export.to_json() if file_format == "json" else export.to_csv_zip()
    response = Response(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="customer-{customer_id}.{suffix}"',
        "Cache-Control": "no-store"})
    return with_security_headers(response)


@router.post("/customers/{customer_id}/erase")
async def erase_customer(request: Request, console: ConsoleDep, signed: Privacy, customer_id: CustomerId,
                         confirm: Annotated[str, Form()] = "") -> Response:
    try:
        if confirm.strip().lstrip("#") != str(customer_id):
            await console.crm.customers.get(customer_id=customer_id)
            raise ValueError(f"To erase, type the customer's number ({customer_id}) in the box: erasure cannot be "
                             "undone.")
        await console.crm.privacy.erase(customer_id=customer_id, agent_id=signed.agent.id,
                                        actor_label=signed.agent.email, ip=client_ip(request))
    except NotFound:
        return _not_found(request)
    except (ValueError, DomainError) as exc:
        return await customer_page(request, console, customer_id, status_code=400, error=str(exc))
    return redirect(f"/customers/{customer_id}?notice=erased")


@router.get("/admin/privacy")
async def privacy_requests(request: Request, console: ConsoleDep, _: Privacy) -> Response:
    return render(request, "admin/privacy.html", pending=await console.crm.privacy.requests(),
                  done=(await console.crm.privacy.requests(status="done"))[-20:], now=datetime.now(UTC),
                  notice=None, error=None)


def _day(value: str) -> datetime | None:
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC) if value.strip() else None
    except ValueError:
        return None


def _number(value: str) -> int | None:
    value = value.strip().lstrip("#")
    return int(value) if value.isdigit() and len(value) < 10 else None


@router.get("/admin/audit")
async def audit_log(request: Request, console: ConsoleDep, _: Auditor, action: str = "", agent: str = "",
                    customer: str = "", since: str = "", until: str = "", before: str = "") -> Response:
    """Newest first; filters: an action or family, an agent, a customer, a day range (UTC, `until` inclusive)."""
    errors = []
    start, end = _day(since), _day(until)
    if (since.strip() and start is None) or (until.strip() and end is None):
        errors.append("Dates look like 2026-11-30.")
    if customer.strip() and _number(customer) is None:
        errors.append("A customer is given by number, e.g. 42.")
    known = {str(a) for a in AuditAction} | set(ACTION_FAMILIES)
    page = await console.crm.audit.search(
        action=action if action in known else None, agent_id=_number(agent),
        subject_type="customer" if _number(customer) else None,
        subject_id=str(_number(customer)) if _number(customer) else None,
        since=start, until=end + timedelta(days=1) if end else None, before=_number(before), limit=PAGE_SIZE)
    agents = {a.id: a for a in await console.crm.agents.list_agents()}
    filters = {"action": action, "agent": agent, "customer": customer, "since": since, "until": until}
    return render(request, "admin/audit.html", page=page, agents=agents, filters=filters,
                  families=ACTION_FAMILIES, actions=[str(a) for a in AuditAction],
                  error=" ".join(errors) or None, notice=None, status_code=400 if errors else 200)
