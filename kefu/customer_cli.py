"""`kefu customer`: what an agent does for one customer from the shell (until the console does it)."""

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
