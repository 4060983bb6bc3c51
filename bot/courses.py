"""Training in the chat: the course catalogue, lessons in order, quizzes, progress (work in progress)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.messages import Reply

if TYPE_CHECKING:
    from bot.engine import _Turn

COURSE_INTENTS = {"start_course", "continue_course"}


async def on_intent(turn: _Turn, intent: str) -> list[Reply]:
    return [Reply(turn.t("not_yet"), intent=intent)]


async def on_button(turn: _Turn, kind: str, rest: str) -> list[Reply]:
    return [Reply(turn.t("help"))]
