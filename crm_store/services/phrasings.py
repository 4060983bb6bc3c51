"""Phrasings learned from conversations: a customer's question that an article answered, proposed as another
phrasing (alternative question) of that article, and a supervisor's accept or reject.

A proposal comes from an agent's reply that used an article inserted through agent assist (the conversation's
questions the bot missed), from an agent linking a customer's message to an article, or from a customer's 👍 on an
article they took from the bot's "did you mean". Accepting one appends the text to the article's alternative
questions through the knowledge service's update, in the same transaction: the article's version and the KB's
revision move, and kb.changed (published after commit) makes every bot process search with it from its next
message on.

Nothing is proposed twice: not a text that already is the article's question or one of its phrasings, not one
already waiting for review, not one rejected before for that article (compared without regard to case, spaces
and punctuation).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.enums import Actor, AuditAction, ProposalSource, ProposalStatus, SenderType
from crm_store.errors import DomainError, InvalidTransition, NotFound
from crm_store.services.audit import audit_in
from crm_store.services.base import Service
from crm_store.services.knowledge import MAX_QUESTION, update_article_in

MAX_PENDING_LISTED = 200
ASSIST_QUESTIONS = 3  # an agent's reply with an article proposes at most the latest this many missed questions
CONVERSATION_WINDOW = 200  # messages read back from an agent's reply to find the questions the bot missed
# The bot's reply to a message that asked for a person or complained: the message is no question to learn from.
NOT_QUESTIONS = {"human_handoff", "complaint"}
# The KB's language rule (knowledge_base.lang.detect_language, which the domain may not import): Chinese when Han
# ideographs make up at least 30% of the letters. A phrasing only matches in its article's language's index.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LETTER = re.compile(r"[^\W\d_]")
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}


class NotProposed(DomainError):
    """A text that is not proposed (the message says why): already a phrasing, already pending, rejected before."""

    code = "not_proposed"


@dataclass(frozen=True)
class ProposalView:
    id: int
    article_id: int
    article_question: str
    language: str
    text: str
    source: str
    status: str
    conversation_id: int | None
    message_id: int | None
    proposed_by_agent_id: int | None
    decided_by_agent_id: int | None
    created_at: datetime
    decided_at: datetime | None

    @classmethod
    def of(cls, p: m.KbPhrasingProposal, article_question: str) -> ProposalView:
        return cls(
            id=p.id, article_id=p.article_id, article_question=article_question, language=p.language, text=p.text,
            source=str(p.source), status=str(p.status), conversation_id=p.conversation_id, message_id=p.message_id,
            proposed_by_agent_id=p.proposed_by_agent_id, decided_by_agent_id=p.decided_by_agent_id,
            created_at=p.created_at, decided_at=p.decided_at,
        )


def phrasing_key(text: str) -> str:
    """What two phrasings are compared by: case, spaces and punctuation aside (full-width forms folded)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def clean_phrasing(text: str) -> str:
    """The text as a phrasing: on one line (the article form takes one phrasing a line), trimmed, capped."""
    return " ".join(text.split())[:MAX_QUESTION].strip()


def written_in(text: str) -> str:
    han = len(_HAN.findall(text))
    return "zh" if han and han >= 0.3 * len(_LETTER.findall(text)) else "en"


def is_typed_question(message: m.Message) -> bool:
    """A customer's typed message (not a button press, a shared contact or a /command)."""
    return (message.sender == SenderType.CUSTOMER and not message.is_private and bool(message.text.strip())
            and not (message.payload or {}).get("button") and not message.text.strip().startswith("/"))


def missed_questions(messages: Sequence[m.Message]) -> list[m.Message]:
    """The customer's questions the bot could not answer, in a conversation's messages (oldest first): its reply was
    "no answer", a "did you mean" whose articles the customer did not take, or what followed (up to their next
    typed message) ended in a handoff."""
    missed = []
    for at, question in enumerate(messages):
        if not is_typed_question(question):
            continue
        after = []
        for message in messages[at + 1:]:
            if is_typed_question(message):
                break
            after.append(message)
        direct = [r for r in _until_customer(after) if r.sender == SenderType.BOT]
        if any(_decision(r) == "handoff" and r.intent in NOT_QUESTIONS for r in direct):
            continue  # "a person, please" or a complaint: the handoff answered what was asked
        fell_through = any(_decision(r) in ("no_answer", "handoff") for r in after if r.sender == SenderType.BOT)
        not_taken = any(_decision(r) == "suggest" for r in direct) and not _took_suggestion(after)
        if fell_through or not_taken:
            missed.append(question)
    return missed


def _until_customer(messages: list[m.Message]) -> list[m.Message]:
    out = []
    for message in messages:
        if message.sender == SenderType.CUSTOMER:
            break
        out.append(message)
    return out


def _took_suggestion(after: list[m.Message]) -> bool:
    """Whether the customer's next message pressed one of the suggested articles (not "none of these")."""
    pressed = next((m_ for m_ in after if m_.sender == SenderType.CUSTOMER), None)
    button = str((pressed.payload or {}).get("button") or "") if pressed is not None else ""
    return button.startswith("kb:") and button.removeprefix("kb:").isdigit()


def _decision(message: m.Message) -> str:
    return str((message.payload or {}).get("decision") or "")


class PhrasingService(Service):
    async def propose(
        self, *, article_id: int, source: ProposalSource | str, text: str | None = None,
        conversation_id: int | None = None, message_id: int | None = None, agent_id: int | None = None,
    ) -> ProposalView:
        """Propose `text` (or the customer's message `message_id`, of `conversation_id` when given) as a phrasing
        of the article; NotProposed says why not (already a phrasing, pending, rejected, another language),
        NotFound for an unknown article or message."""
        source = ProposalSource(source)
        async with self.uow() as uow:
            session = uow.session
            if message_id is not None:
                message = await session.get(m.Message, message_id)
                if message is None or message.sender != SenderType.CUSTOMER or (
                    conversation_id is not None and message.conversation_id != conversation_id
                ):
                    raise NotFound("There is no such customer message in this conversation.")
                conversation_id = message.conversation_id
                text = message.text if text is None else text
            if text is None:
                raise ValueError("A proposal needs a text or a customer's message.")
            article = await _locked_article(session, article_id)
            if article is None:
                raise NotFound(f"No article {article_id}.")
            proposal = await _propose_in(session, article, text, source=source, conversation_id=conversation_id,
                                         message_id=message_id, agent_id=agent_id)
            await session.flush()
            view = ProposalView.of(proposal, article.question)
            await uow.commit()
        return view

    async def propose_from_reply(self, *, message_id: int) -> list[ProposalView]:
        """An agent's reply that used an article (its `kb_article_id`, set when they inserted it from agent assist):
        the conversation's questions the bot missed before it (the latest few) are proposed as phrasings of that
        article. Those already known, pending or rejected are left out; an unknown article proposes nothing."""
        async with self.uow() as uow:
            session = uow.session
            reply = await session.get(m.Message, message_id)
            if reply is None or reply.sender != SenderType.AGENT or reply.is_private or reply.kb_article_id is None:
                return []
            article = await _locked_article(session, reply.kb_article_id)
            if article is None:
                return []
            earlier = list(reversed((await session.scalars(
                select(m.Message).where(m.Message.conversation_id == reply.conversation_id, m.Message.id < reply.id)
                .order_by(m.Message.id.desc()).limit(CONVERSATION_WINDOW)
            )).all()))
            made = []
            for question in missed_questions(earlier)[-ASSIST_QUESTIONS:]:
                try:
                    made.append(await _propose_in(
                        session, article, question.text, source=ProposalSource.ASSIST,
                        conversation_id=question.conversation_id, message_id=question.id, agent_id=reply.agent_id,
                    ))
                except NotProposed:
                    continue
            await session.flush()
            views = [ProposalView.of(p, article.question) for p in made]
            await uow.commit()
        return views

    async def pending(self, *, language: str | None = None, limit: int = MAX_PENDING_LISTED) -> list[ProposalView]:
        """Proposals waiting for review, newest first, in one language or both."""
        return await self.list_proposals(status=ProposalStatus.PENDING, language=language, limit=limit)

    async def list_proposals(
        self, *, status: ProposalStatus | str | None = None, article_id: int | None = None, language: str | None = None,
        limit: int = MAX_PENDING_LISTED,
    ) -> list[ProposalView]:
        """Proposals of any status, newest first, filtered by status, article and language."""
        p = m.KbPhrasingProposal
        query = (select(p, m.KbArticle.question).join(m.KbArticle, m.KbArticle.id == p.article_id)
                 .order_by(p.id.desc()).limit(max(1, min(limit, MAX_PENDING_LISTED))))
        if status:
            query = query.where(p.status == ProposalStatus(status))
        if language:
            query = query.where(p.language == language)
        if article_id is not None:
            query = query.where(p.article_id == article_id)
        async with self.uow() as uow:
            return [ProposalView.of(row, question) for row, question in (await uow.session.execute(query)).all()]

    async def counts(self) -> dict[str, int]:
        """Pending proposals by language ({"en": 2, "zh": 1}; a language with none is absent)."""
        p = m.KbPhrasingProposal
        query = select(p.language, func.count()).where(p.status == ProposalStatus.PENDING).group_by(p.language)
        async with self.uow() as uow:
            return {language: int(n) for language, n in (await uow.session.execute(query)).all()}

    async def get(self, *, proposal_id: int) -> ProposalView:
        async with self.uow() as uow:
            proposal = await _get(uow.session, proposal_id)
            article = await uow.session.get(m.KbArticle, proposal.article_id)
            return ProposalView.of(proposal, article.question if article else "")

    async def accept(self, *, proposal_id: int, agent_id: int | None = None) -> ProposalView:
        """Add the proposed text to its article's alternative questions (a new version, the KB's revision bumped,
        kb.changed after commit) and record who accepted it, in one transaction."""
        async with self.uow() as uow:
            session = uow.session
            proposal = await _decidable(session, proposal_id)
            article = await _locked_article(session, proposal.article_id)
            if article is None:  # the proposal cascades away with its article; a race with that deletion
                raise NotFound("That article no longer exists.")
            _decide(session, proposal, ProposalStatus.ACCEPTED, agent_id, AuditAction.PHRASING_ACCEPTED)
            known = {phrasing_key(q) for q in [article.question, *(article.alt_questions or ())]}
            if phrasing_key(proposal.text) not in known:  # added by hand since: nothing to change
                # Last, just before commit: the KB's revision row stays locked from its bump until then.
                article = await update_article_in(uow, article_id=article.id, agent_id=agent_id,
                                                  alt_questions=[*(article.alt_questions or ()), proposal.text])
            await session.flush()
            view = ProposalView.of(proposal, article.question)
            await uow.commit()
        return view

    async def reject(self, *, proposal_id: int, agent_id: int | None = None) -> ProposalView:
        """Turn a proposal down: its text is never proposed for that article again."""
        async with self.uow() as uow:
            session = uow.session
            proposal = await _decidable(session, proposal_id)
            _decide(session, proposal, ProposalStatus.REJECTED, agent_id, AuditAction.PHRASING_REJECTED)
            article = await session.get(m.KbArticle, proposal.article_id)
            await session.flush()
            view = ProposalView.of(proposal, article.question if article else "")
            await uow.commit()
        return view


async def _locked_article(session: AsyncSession, article_id: int) -> m.KbArticle | None:
    """The article, locked: proposals and accepts of one article queue, so a text is never proposed twice."""
    return (await session.execute(
        select(m.KbArticle).where(m.KbArticle.id == article_id).with_for_update()
    )).scalar_one_or_none()


async def _propose_in(
    session: AsyncSession, article: m.KbArticle, text: str, *, source: ProposalSource, conversation_id: int | None,
    message_id: int | None, agent_id: int | None,
) -> m.KbPhrasingProposal:
    text = clean_phrasing(text)
    key = phrasing_key(text)
    if not key:
        raise NotProposed("There is no question to propose: the message has no words.")
    if written_in(text) != article.language:
        raise NotProposed(f"The question is in {LANGUAGE_NAMES[written_in(text)]} and the article in "
                          f"{LANGUAGE_NAMES.get(article.language, article.language)}: a phrasing must be in the "
                          "article's language.")
    if key in {phrasing_key(q) for q in [article.question, *(article.alt_questions or ())]}:
        raise NotProposed("The article already has this question among its phrasings.")
    p = m.KbPhrasingProposal
    earlier = await session.execute(select(p.status, p.text).where(
        p.article_id == article.id, p.status.in_([ProposalStatus.PENDING, ProposalStatus.REJECTED])))
    for status, earlier_text in earlier.all():
        if phrasing_key(earlier_text) == key:
            raise NotProposed("This question is already waiting for review for this article."
                              if status == ProposalStatus.PENDING
                              else "This question was rejected for this article before.")
    proposal = p(article_id=article.id, language=article.language, text=text, source=source,
                 conversation_id=conversation_id, message_id=message_id, status=ProposalStatus.PENDING,
                 proposed_by_agent_id=agent_id, created_at=utcnow())
    session.add(proposal)
    return proposal


async def _get(session: AsyncSession, proposal_id: int, *, for_update: bool = False) -> m.KbPhrasingProposal:
    query = select(m.KbPhrasingProposal).where(m.KbPhrasingProposal.id == proposal_id)
    if for_update:
        query = query.with_for_update()
    proposal = (await session.execute(query)).scalar_one_or_none()
    if proposal is None:
        raise NotFound("There is no such proposal (its article may have been deleted).")
    return proposal


async def _decidable(session: AsyncSession, proposal_id: int) -> m.KbPhrasingProposal:
    proposal = await _get(session, proposal_id, for_update=True)
    if proposal.status != ProposalStatus.PENDING:
        raise InvalidTransition(f"This proposal was already {proposal.status}.")
    return proposal


def _decide(session: AsyncSession, proposal: m.KbPhrasingProposal, status: ProposalStatus, agent_id: int | None,
            action: AuditAction) -> None:
    proposal.status = status
    proposal.decided_by_agent_id = agent_id
    proposal.decided_at = utcnow()
    # The entry names the proposal and the article, never the customer's words (the log is append-only).
    audit_in(session, action=action, actor=Actor.AGENT if agent_id is not None else Actor.SYSTEM, agent_id=agent_id,
             subject_type="kb_article", subject_id=proposal.article_id,
             details={"proposal_id": proposal.id, "source": str(proposal.source), "language": proposal.language})
