"""Linking a chat to a CRM customer with a one-time token an agent created (work in progress)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.messages import Reply

if TYPE_CHECKING:
    from bot.engine import _Turn


async def redeem(turn: _Turn, token: str) -> list[Reply]:
    return [Reply(turn.t("not_yet"))]
