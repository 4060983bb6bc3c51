"""Surveys in the chat: CSAT after a resolved ticket, NPS when a campaign sends it (work in progress)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.messages import Reply

if TYPE_CHECKING:
    from bot.engine import DialogueEngine, _Turn


async def on_event(engine: DialogueEngine, event: Any) -> None:
    return None


async def on_text(turn: _Turn, message: str) -> list[Reply]:
    turn.state.pop("survey", None)
    return [Reply(turn.t("help"))]


async def on_button(turn: _Turn, rest: str) -> list[Reply]:
    return [Reply(turn.t("help"))]
