"""The bot learns from a customer's 👍: when they take an article from the bot's "did you mean" and then say it
helped, the question that produced the suggestion is proposed as a phrasing of that article, for a supervisor to
review (crm_store.services.phrasings).

The chat state keeps only ids (the question's message id, the articles offered, the one taken), under one key."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bot.messages import payload_number
from crm_store.enums import ProposalSource
from crm_store.errors import DomainError

log = logging.getLogger(__name__)
KEY = "suggested"


def forget(state: dict[str, Any]) -> None:
    """A new question: a 👍 from now on says nothing about an earlier one."""
    state.pop(KEY, None)


def remember_suggestion(turn: Any, article_ids: Iterable[int]) -> None:
    """The bot offered these articles for the customer's message of this turn."""
    if turn.message_id is not None:
        turn.state[KEY] = {"message_id": turn.message_id, "articles": [int(a) for a in article_ids]}


def remember_choice(turn: Any, article_id: int) -> None:
    """The customer opened an article: one the bot offered for their question, or (forgotten) another."""
    suggested = turn.state.get(KEY)
    if not suggested:
        return
    if article_id in suggested.get("articles", ()):
        suggested["chosen"] = article_id
    else:
        forget(turn.state)


async def on_feedback(turn: Any, verdict: str) -> None:
    """ "fb:up:<id>" on the article taken from a suggestion proposes the question; any other verdict forgets it."""
    suggested = turn.state.get(KEY) or {}
    forget(turn.state)
    up, _, raw_id = verdict.partition(":")
    try:
        article_id = payload_number(raw_id)
    except ValueError:  # a forged or stale button
        return
    if up != "up" or suggested.get("chosen") != article_id:
        return
    try:
        await turn.engine.crm.phrasings.propose(article_id=article_id, message_id=suggested["message_id"],
                                                source=ProposalSource.FEEDBACK)
    except DomainError as exc:  # already a phrasing, pending or rejected: nothing to learn
        log.debug("no phrasing proposed from feedback: %s", exc)
