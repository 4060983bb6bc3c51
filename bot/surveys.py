"""Surveys in the chat: CSAT after a resolved ticket, NPS when a campaign sends it.

The CRM sends a survey (SurveyInvited, on the event bus); the bot asks its first question in the customer's chat
(a pushed message, delivered by the channel holding the chat). Ratings and choices are answered with buttons
(`sv:<invitation>:<question>:<value>`, `-` skips an optional question); a free-text question takes the chat's
next typed message as the answer. The CRM keeps one answer per question: a double tap counts once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bot.messages import Button, Reply, payload_number
from bot.texts import text
from crm_store.enums import SurveyQuestionKind
from crm_store.events import SurveyInvited
from crm_store.services.surveys import AnswerResult, SurveyQuestion

if TYPE_CHECKING:
    from bot.engine import DialogueEngine, _Turn

CHAT_CHANNELS = {"telegram", "webchat"}
# A typed answer is expected for this long after the question; later, the chat's messages are questions again.
TEXT_ANSWER_WINDOW_S = 6 * 3600


async def on_event(engine: DialogueEngine, event: Any) -> None:
    """Ask a survey the CRM has just sent: its first question, pushed to the customer's chat (once)."""
    if not isinstance(event, SurveyInvited) or event.channel not in CHAT_CHANNELS or not event.external_id:
        return
    if event.conversation_id is None:
        return
    invitation, question = await engine.crm.surveys.next_question(invitation_id=event.invitation_id)
    if question is None or invitation.status in ("completed", "expired"):
        return
    key = f"{event.channel}:{event.external_id}"
    state = await engine.state.get(key)
    language = str(state.get("language") or invitation.language or "en")
    intro = text(f"survey_intro_{event.kind}", language) if event.kind in ("csat", "nps") else ""
    reply = ask(invitation.id, question, language, state, intro=intro)
    # The idempotency key makes a redelivered event ask nothing twice.
    await engine.push(conversation_id=event.conversation_id, reply=reply,
                      idempotency_key=f"survey:{invitation.id}:ask:{question.id}")
    await engine.state.set(key, state)


def ask(invitation_id: int, question: SurveyQuestion, language: str, state: dict[str, Any], *,
        intro: str = "") -> Reply:
    """A question as a chat message; a free-text question makes the chat's next message its answer."""
    body = f"{intro}\n\n{question.text(language)}" if intro else question.text(language)
    prefix = f"sv:{invitation_id}:{question.id}:"
    if question.kind == SurveyQuestionKind.RATING:
        low, high = question.min or 0, question.max or 0
        buttons = tuple(Button("⭐" * v if high <= 5 else str(v), f"{prefix}{v}") for v in range(low, high + 1))
    elif question.kind == SurveyQuestionKind.CHOICE:
        buttons = tuple(Button(option, f"{prefix}{option}") for option in question.options)
    else:
        state["survey"] = {"invitation": invitation_id, "question": question.id, "asked_at": time.time()}
        buttons = (Button(text("survey_skip", language), f"{prefix}-"),) if question.optional else ()
    if question.kind != SurveyQuestionKind.TEXT and question.optional:
        buttons = (*buttons, Button(text("survey_skip", language), f"{prefix}-"))
    return Reply(body, buttons, decision="flow", intent="survey")


async def on_button(turn: _Turn, rest: str) -> list[Reply]:
    raw_id, _, rest = rest.partition(":")
    question_id, _, raw_value = rest.partition(":")
    try:
        invitation_id = payload_number(raw_id)
    except ValueError:
        invitation_id = None
    if invitation_id is None or not question_id:
        return [Reply(turn.t("survey_unknown"))]
    value: int | str | None = None if raw_value == "-" else raw_value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    return await _answer(turn, invitation_id, question_id, value)


async def on_text(turn: _Turn, message: str) -> list[Reply] | None:
    """The chat's typed answer to a pending free-text question; None when nothing waits for one."""
    pending = turn.state.pop("survey", None)
    if not isinstance(pending, dict) or time.time() - float(pending.get("asked_at", 0)) > TEXT_ANSWER_WINDOW_S:
        return None
    return await _answer(turn, int(pending["invitation"]), str(pending["question"]), message)


async def _answer(turn: _Turn, invitation_id: int, question_id: str, value: int | str | None) -> list[Reply]:
    turn.state.pop("survey", None)
    result: AnswerResult = await turn.engine.crm.surveys.answer(
        invitation_id=invitation_id, question_id=question_id, value=value, channel=turn.incoming.channel,
        external_id=turn.incoming.external_id,
    )
    if result.status == "not_found":
        return [Reply(turn.t("survey_unknown"))]
    if result.status == "expired":
        return [Reply(turn.t("survey_expired"))]
    lead = {"duplicate": turn.t("survey_already"), "invalid": turn.t("survey_invalid")}.get(result.status, "")
    if result.next_question is None:
        done = turn.t("survey_thanks") if result.status == "ok" else turn.t("survey_already")
        return [Reply(done, decision="flow", intent="survey")]
    return [ask(invitation_id, result.next_question, turn.language, turn.state, intro=lead)]
