"""Linking a chat to a CRM customer with a one-time code an agent created: `/start link_<code>` (a Telegram deep
link) or `/link <code>` (typed, in any chat). A refused code shows nobody's data and offers a person."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot import loyalty
from bot.messages import Button, Reply
from crm_store.errors import DomainError, LinkTokenExpired, LinkTokenUnknown, LinkTokenUsed

if TYPE_CHECKING:
    from bot.engine import _Turn

# A code in a message is a credential until used: the stored transcript keeps only its first characters.
CODE_IN_MESSAGE = re.compile(r"^(\s*/(?:start(?:@\w+)?\s+link_|link(?:@\w+)?\s+))(\S{4})\S*", re.IGNORECASE)


def redacted(text: str) -> str:
    """The message as stored: `/link abcd…` rather than the whole code."""
    return CODE_IN_MESSAGE.sub(r"\1\2…", text)


REFUSALS: tuple[tuple[type[DomainError], str], ...] = (
    (LinkTokenUnknown, "link_code_unknown"),
    (LinkTokenUsed, "link_code_used"),
    (LinkTokenExpired, "link_code_expired"),
    (DomainError, "link_code_conflict"),  # already linked to someone else, or the customer was merged away
)


async def redeem(turn: _Turn, token: str) -> list[Reply]:
    """Link this chat with the code, then greet the customer by name with their points."""
    token = token.strip()
    if not token:
        return [_refusal(turn, "link_code_missing")]
    try:
        linked = await turn.engine.crm.customers.redeem_link_token(
            token=token, channel=turn.incoming.channel, external_id=turn.incoming.external_id
        )
    except DomainError as exc:
        return [_refusal(turn, next(key for kind, key in REFUSALS if isinstance(exc, kind)))]
    turn.state["fallbacks"] = 0
    return await loyalty.welcome_linked(turn, linked.customer, intent="link_account")


def _refusal(turn: _Turn, key: str) -> Reply:
    return Reply(turn.t(key), (Button(turn.t("talk_to_human"), "human:yes"),), intent="link_account")
