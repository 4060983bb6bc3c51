"""`kefu customer`: what an agent or an admin does for one customer from the shell: a link code, an export of
the customer's data, an erasure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from kefu.cli_support import _load_settings, _run, _with_crm, fail

if TYPE_CHECKING:
    from crm_store.crm import CRM

customer_app = typer.Typer(help="CRM customers.", no_args_is_help=True)


@customer_app.command("link-token")
def link_token(
    customer_id: Annotated[int, typer.Option(help="The CRM customer the chat will be linked to.",
                                             show_default=False)],
    days: Annotated[float, typer.Option(help="How long the code stays valid.")] = 7,
    agent_id: Annotated[int | None, typer.Option(help="The agent handing out the code (recorded).",
                                                 show_default=False)] = None,
    bot_username: Annotated[str | None, typer.Option(envvar="KEFU_BOT_USERNAME", show_default=False,
                                                     help="The Telegram bot's username, to print a t.me link.")] = None,
) -> None:
    """Create a one-time code that links a customer's chat to CUSTOMER_ID, shown once (only its hash is kept)."""
    from datetime import timedelta

    if days <= 0:
        fail("--days must be more than 0")
    settings = _load_settings()

    async def create(crm: CRM) -> tuple[Any, Any]:
        created = await crm.customers.create_link_token(customer_id=customer_id, agent_id=agent_id,
                                                        ttl=timedelta(days=days))
        return created, await crm.customers.get(customer_id=customer_id)

    created, customer = _run(lambda: _with_crm(settings, create), settings)
    echo = typer.echo
    echo(f"Link code for customer {customer.id} ({customer.name or 'no name'}), valid once until "
         f"{created.expires_at:%Y-%m-%d %H:%M} UTC. It is shown only now:")
    echo(f"  {created.token}")
    echo("")
    if bot_username:
        echo(f"  Telegram: https://t.me/{bot_username.lstrip('@')}?start={created.start_parameter}")
    else:
        echo(f"  Telegram: send the bot  /start {created.start_parameter}  (or set KEFU_BOT_USERNAME for a t.me link)")
    echo(f"  Web chat: type  {created.chat_command}  (or open /webchat?link={created.token})")


def _operator() -> str:
    """Who ran the command, for the audit log (no agent signs in at a shell)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no login name in a bare container
        user = "unknown"
    return f"kefu CLI ({user}@{socket.gethostname()})"


@customer_app.command("export")
def export_customer(
    customer_id: Annotated[int, typer.Argument(help="The CRM customer.", show_default=False)],
    out: Annotated[str, typer.Option("--out", help="The file to write (.json, or .zip of CSV files).",
                                     show_default=False)],
) -> None:
    """Write every row Kefu holds about a customer to a JSON file, or to a zip of CSV files (one per table)."""
    from pathlib import Path

    target = Path(out)
    if target.suffix not in (".json", ".zip"):
        fail("--out must end in .json (one JSON document) or .zip (one CSV file per table)")
    settings = _load_settings()

    async def export(crm: CRM) -> Any:
        return await crm.privacy.export(customer_id=customer_id, actor="system", actor_label=_operator(),
                                        file_format="json" if target.suffix == ".json" else "csv")

    exported = _run(lambda: _with_crm(settings, export), settings)
    body = exported.to_json() if target.suffix == ".json" else exported.to_csv_zip()
    target.write_bytes(body)
    target.chmod(0o600)  # personal data
    rows = sum(len(r) for r in exported.tables.values())
    typer.echo(f"Exported customer {customer_id}: {rows} rows from {len(exported.tables)} tables to {target}.")


@customer_app.command("erase")
def erase_customer(
    customer_id: Annotated[int, typer.Argument(help="The CRM customer.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", help="Erase without asking (scripts).")] = False,
) -> None:
    """Erase a customer's personal data everywhere (it cannot be undone); the audit log records it."""
    import sys

    if not yes:
        if not sys.stdin.isatty():
            fail("erasure cannot be undone: pass --yes to erase without a terminal to confirm at")
        typer.confirm(f"Erase customer {customer_id}'s personal data for good?", abort=True)
    settings = _load_settings()

    async def erase(crm: CRM) -> Any:
        return await crm.privacy.erase(customer_id=customer_id, actor="system", actor_label=_operator())

    report = _run(lambda: _with_crm(settings, erase), settings)
    touched = ", ".join(f"{table} {count}" for table, count in sorted(report.rows.items()))
    typer.echo(f"Erased customer {', '.join(map(str, report.customer_ids))}: {touched}. "
               f"Audit entry #{report.audit_entry_id}.")
