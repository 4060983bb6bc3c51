"""The dialogue engine: from a customer's message on any channel to the bot's replies and the CRM's records.

Every message is stored first (idempotently: a redelivered update is answered once), encoded once for the NLU
and the knowledge base, routed by intent, and every reply is stored with the intent, confidence and article
that produced it. While an agent owns the conversation the bot stays silent: the message reaches the agent
through the event bus (MessageReceived), and the agent's reply comes back the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from bot import courses, learning, linking, loyalty, privacy, surveys
from bot.messages import Button, Incoming, Outcome, Reply, payload_number
from bot.state import MemoryStateStore, StateStore
from bot.texts import LANGUAGES, language_from_code, text, written_language
from crm_store.enums import ConversationStatus, HandoffReason, SenderType, TicketPriority
from crm_store.errors import NotFound
from crm_store.events import CustomerErased
from knowledge_base.records import SearchResult
from knowledge_base.search import QueryEncoding
from nlu.errors import NluError
from nlu.result import ParseResult

log = logging.getLogger(__name__)

# The conversation belongs to the agents: the bot relays and keeps quiet.
AGENT_SIDE = {ConversationStatus.PENDING, ConversationStatus.OPEN, ConversationStatus.SNOOZED}
SMALL_TALK = {"greet", "thanks", "goodbye", "affirm", "deny"}
# Plain words that mean "a person, please" (the /human command is handled with the other commands).
HANDOFF_WORDS = {"human", "人工", "转人工", "人工客服"}


@dataclass(frozen=True)
class EngineSettings:
    fallbacks_before_handoff: int = 2  # no answer this many times in a row: a person takes over


class DialogueEngine:
    def __init__(
        self, *, crm: Any, kb: Any, nlu: Any, state: StateStore | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        self.crm = crm
        self.kb = kb  # knowledge_base.service.KnowledgeBase
        self.nlu = nlu  # nlu.service.Nlu
        self.state = state or MemoryStateStore()
        self.settings = settings or EngineSettings()

    def attach(self, bus: Any) -> None:
        """Ask the surveys the CRM sends (CSAT after a resolved ticket, NPS campaigns): one consumer group for
        every bot process, so each invitation is asked once."""
        bus.subscribe("bot-surveys", self.on_event)

    async def on_event(self, event: Any) -> None:
        if isinstance(event, CustomerErased):  # the chats forget them too (language, a pending survey, a phone)
            for channel, external_id in event.chats:
                await self.state.set(f"{channel}:{external_id}", {})
            return
        await surveys.on_event(self, event)

    async def push(self, *, conversation_id: int, reply: Reply, idempotency_key: str | None = None) -> Reply:
        """Record a message the bot starts (not an answer): the channel holding the chat delivers it (BotPushed);
        with an idempotency key, pushing the same message again records and delivers nothing."""
        return await self._record(conversation_id, reply, push=True, idempotency_key=idempotency_key)

    async def record_only(self, incoming: Incoming) -> None:
        """Store a message the bot will not answer (its chat is over the flood limit): nothing a customer sends is
        lost, even when it is not answered."""
        await self._record_incoming(incoming)

    async def _record_incoming(self, incoming: Incoming) -> Any:
        payload: dict[str, str] = {}
        if incoming.payload:
            payload["button"] = incoming.payload
        if incoming.shared_contact is not None:
            payload["contact"] = incoming.shared_contact
        return await self.crm.conversations.record_incoming(
            channel=incoming.channel, external_id=incoming.external_id, text=linking.redacted(incoming.text),
            channel_message_id=incoming.message_id, payload=payload or None, display_name=incoming.display_name,
            language=language_from_code(incoming.language_code),
        )

    async def handle(self, incoming: Incoming) -> Outcome:
        started = time.perf_counter()
        recorded = await self._record_incoming(incoming)
        conversation = recorded.conversation
        key = f"{incoming.channel}:{incoming.external_id}"
        state = await self.state.get(key)
        language = state.get("language") or language_from_code(incoming.language_code)
        # The chat follows the language the customer writes in, unless they chose one (/language, "speak English");
        # the channel's hint is only the first guess, and a button press says nothing.
        written = None if incoming.payload else written_language(incoming.text)
        if written and not state.get("language_chosen"):
            language = written
        state["language"] = language = language or "en"
        base = Outcome((), conversation.id, recorded.customer_id, language)
        if recorded.duplicate:
            return replace(base, duplicate=True)
        if conversation.status in AGENT_SIDE:
            await self.state.set(key, state)
            return replace(base, relayed=True)
        turn = _Turn(self, incoming, state, conversation.id, recorded.customer_id, message_id=recorded.message.id)
        try:
            replies = await turn.respond()
        except NluError as exc:  # the NLU backend is down: the KB still answers
            log.warning("NLU unavailable, searching the KB directly: %s", exc)
            replies = await turn.answer_from_kb(None, None)
        stored = [await self._record(conversation.id, r) for r in replies]
        await self.state.set(key, turn.state)
        return replace(base, replies=tuple(stored), language=turn.language, customer_id=turn.customer_id,
                       timings_ms={"total": (time.perf_counter() - started) * 1000})

    async def _record(self, conversation_id: int, reply: Reply, *, push: bool = False,
                      idempotency_key: str | None = None) -> Reply:
        recorded = await self.crm.conversations.record_outgoing(
            conversation_id=conversation_id, sender=SenderType.BOT, text=reply.text, payload=reply.payload(),
            intent=reply.intent, confidence=reply.confidence, kb_article_id=reply.article_id, push=push,
            idempotency_key=idempotency_key,
        )
        return replace(reply, message_id=recorded.message.id)


# The ticket's subject when the customer's message says nothing but "a person, please" (agents read these).
SUBJECTS = {HandoffReason.CUSTOMER_ASKED: "Asked for a person", HandoffReason.NO_ANSWER: "The bot had no answer",
            HandoffReason.COMPLAINT: "Complaint"}


def ticket_subject(reason: HandoffReason, message: str) -> str:
    """The customer's own words (without a /human command or a bare "human"), else what happened."""
    words = message.strip()
    if words.startswith("/"):
        words = words.split(maxsplit=1)[1] if len(words.split(maxsplit=1)) > 1 else ""
    if words.lower() in HANDOFF_WORDS:
        words = ""
    return words[:300] or SUBJECTS.get(reason, str(reason))


class _Turn:
    """One incoming message's handling: what the engine decides, with the chat's state."""

    def __init__(self, engine: DialogueEngine, incoming: Incoming, state: dict[str, Any], conversation_id: int,
                 customer_id: int, *, message_id: int | None = None) -> None:
        self.engine = engine
        self.incoming = incoming
        self.state = state
        self.conversation_id = conversation_id
        self.customer_id = customer_id
        self.message_id = message_id  # the customer's message (or button press) of this turn, as stored

    @property
    def language(self) -> str:
        return str(self.state.get("language") or "en")

    def t(self, key: str, **values: object) -> str:
        return text(key, self.language, **values)

    async def respond(self) -> list[Reply]:
        if self.incoming.shared_contact is not None:
            return await loyalty.link_by_phone(self, self.incoming.shared_contact)
        if self.incoming.payload:
            return await self.on_button(self.incoming.payload)
        message = self.incoming.text.strip()
        if not message:
            return [Reply(self.t("unsupported"))]
        command = message.split()[0].lower() if message.startswith("/") else None
        if command is not None:
            return await self.on_command(command.split("@")[0], message)
        # A survey question waits for a typed answer (a comment, "why?").
        if self.state.get("survey") and (replies := await surveys.on_text(self, message)) is not None:
            return replies
        if message.lower() in HANDOFF_WORDS:
            return await self.hand_off(HandoffReason.CUSTOMER_ASKED, message, intent="human_handoff")
        encoding = await asyncio.to_thread(self.engine.kb.encode_query, message, with_features=True)
        parsed: ParseResult = await self.engine.nlu.parse(message, encoding=encoding)
        intent = parsed.intent.name
        if intent == "human_handoff":
            return await self.hand_off(HandoffReason.CUSTOMER_ASKED, message, intent=intent)
        if intent == "complaint":
            replies = await self.hand_off(HandoffReason.COMPLAINT, message, intent=intent)
            return [replace(replies[0], text=self.t("complaint") + replies[0].text)]
        if intent == "change_language":
            wanted = next((v for v in parsed.entity_values("language") if v in LANGUAGES), None)
            if wanted is None and written_language(message) is None:  # an emoji, a sign: ask rather than switch
                return [Reply(self.t("choose_language"), (Button("English", "lang:en"), Button("中文", "lang:zh")),
                              intent=intent)]
            return self.set_language(wanted or ("en" if self.language == "zh" else "zh"), intent)
        if intent == "unsubscribe":
            return await self.stop(intent)
        if intent == "privacy_request":  # "delete my data", "what do you store about me": what /privacy shows
            self.state["fallbacks"] = 0
            return [replace(r, intent=intent, confidence=parsed.intent.confidence) for r in await privacy.show(self)]
        if intent in loyalty.LOYALTY_INTENTS:
            self.state["fallbacks"] = 0
            entities = {e.entity: parsed.entity_values(e.entity) for e in parsed.entities}
            return await loyalty.on_intent(self, intent, entities)
        if intent in courses.COURSE_INTENTS:
            self.state["fallbacks"] = 0
            return await courses.on_intent(self, intent)
        if intent in SMALL_TALK:
            self.state["fallbacks"] = 0
            return [Reply(self.t(intent), decision="flow", intent=intent, confidence=parsed.intent.confidence)]
        return await self.answer_from_kb(encoding, parsed)

    async def answer_from_kb(self, encoding: QueryEncoding | None, parsed: ParseResult | None) -> list[Reply]:
        message = self.incoming.text.strip()
        learning.forget(self.state)  # a 👍 from now on is not about an earlier question's suggestion
        result: SearchResult = await asyncio.to_thread(self.engine.kb.search, message, encoding=encoding)
        intent = parsed.intent.name if parsed else None
        confidence = parsed.intent.confidence if parsed else None
        if result.decision == "answer" and result.best is not None:
            self.state["fallbacks"] = 0
            hit = result.best
            return [self.article_reply(hit.article_id, hit.question, hit.answer, hit.external_id, intent=intent,
                                       confidence=hit.confidence)]
        if result.decision == "suggest" and result.suggestions:
            self.state["fallbacks"] = 0
            buttons = tuple(Button(h.question, f"kb:{h.article_id}") for h in result.suggestions)
            learning.remember_suggestion(self, (h.article_id for h in result.suggestions))
            return [Reply(self.t("suggest"), (*buttons, Button(self.t("none_of_these"), "kb:none")),
                          decision="suggest", intent=intent, confidence=result.suggestions[0].confidence)]
        if intent == "out_of_scope":
            # Off-topic is not a failure to understand: it does not count towards a handoff.
            return [Reply(self.t("out_of_scope"), decision="no_answer", intent=intent, confidence=confidence)]
        return await self.fallback(intent, confidence)

    async def fallback(self, intent: str | None, confidence: float | None) -> list[Reply]:
        self.state["fallbacks"] = int(self.state.get("fallbacks", 0)) + 1
        # VIP first: a customer whose tier raises their tickets to high or urgent gets a person at the first miss.
        if self.state["fallbacks"] >= self.engine.settings.fallbacks_before_handoff or await loyalty.is_vip(self):
            return await self.hand_off(HandoffReason.NO_ANSWER, self.incoming.text, intent=intent)
        return [Reply(self.t("no_answer"), (Button(self.t("talk_to_human"), "human:yes"),
                                            Button(self.t("no_thanks"), "human:no")),
                      decision="no_answer", intent=intent, confidence=confidence)]

    async def on_button(self, payload: str) -> list[Reply]:
        kind, _, rest = payload.partition(":")
        if kind == "fb":  # "Was this helpful?": the press itself is stored with the incoming message
            await learning.on_feedback(self, rest)  # 👍 on an article taken from "did you mean": a phrasing
            if rest.startswith("down"):
                return [Reply(self.t("feedback_sorry"), (Button(self.t("talk_to_human"), "human:yes"),
                                                         Button(self.t("no_thanks"), "human:no")))]
            return [Reply(self.t("feedback_thanks"))]
        if kind == "kb":
            if rest == "none":
                return await self.fallback(None, None)
            return await self.show_article(rest)
        if kind == "human":
            if rest == "yes":
                return await self.hand_off(HandoffReason.CUSTOMER_ASKED, "", intent="human_handoff")
            self.state["fallbacks"] = 0
            return [Reply(self.t("rephrase"))]
        if kind in ("redeem", "confirm", "cancel"):
            return await loyalty.on_button(self, kind, rest)
        if kind == "sv":
            return await surveys.on_button(self, rest)
        if kind == "pv":
            return await privacy.on_button(self, rest)
        if kind in ("co", "qz"):
            return await courses.on_button(self, kind, rest)
        language, _, origin = rest.partition(":")
        if kind == "lang" and language in LANGUAGES:
            # The welcome's buttons come before the customer has written a word: a guess their writing overrides.
            return self.set_language(language, None, chosen=origin != "welcome")
        return [Reply(self.t("help"))]  # a stale or unknown button: say what the bot can do

    async def show_article(self, raw_id: str) -> list[Reply]:
        try:
            article = await self.engine.crm.knowledge.get(article_id=payload_number(raw_id))
        except (ValueError, NotFound):  # a stale button (a deleted article) must not crash the chat
            return await self.fallback(None, None)
        self.state["fallbacks"] = 0
        learning.remember_choice(self, article.id)
        return [self.article_reply(article.id, article.question, article.answer, article.external_id)]

    def article_reply(self, article_id: int, question: str, answer: str, external_id: str | None, *,
                      intent: str | None = None, confidence: float | None = None) -> Reply:
        """The answer, its source, and "Was this helpful?" buttons."""
        body = f"{answer}\n\n{self.t('answer_source', question=question)}\n\n{self.t('helpful')}"
        buttons = (Button(self.t("yes"), f"fb:up:{article_id}"), Button(self.t("no"), f"fb:down:{article_id}"))
        return Reply(body, buttons, decision="answer", intent=intent, confidence=confidence, article_id=article_id,
                     article_external_id=external_id, markdown=True)

    async def on_command(self, command: str, message: str) -> list[Reply]:
        argument = message.split(maxsplit=1)[1].strip() if len(message.split(maxsplit=1)) > 1 else ""
        if command == "/start" and argument.startswith("link_"):  # a deep link: t.me/<bot>?start=link_<token>
            return await linking.redeem(self, argument.removeprefix("link_"))
        if command == "/link":
            return await linking.redeem(self, argument)
        if command == "/courses":
            return await courses.on_intent(self, "start_course")
        if command == "/start":
            name = f", {self.incoming.display_name}" if self.incoming.display_name else ""
            return [Reply(self.t("welcome", name=name), (Button("English", "lang:en:welcome"),
                                                         Button("中文", "lang:zh:welcome")))]
        if command == "/help":
            return [Reply(self.t("help"))]
        if command in ("/human", "/agent"):
            return await self.hand_off(HandoffReason.CUSTOMER_ASKED, message, intent="human_handoff")
        if command == "/language":
            return [Reply(self.t("choose_language"), (Button("English", "lang:en"), Button("中文", "lang:zh")))]
        if command == "/stop":
            return await self.stop(None)
        if command == "/privacy":
            return await privacy.show(self)
        return [Reply(self.t("help"))]

    def set_language(self, language: str, intent: str | None, *, chosen: bool = True) -> list[Reply]:
        """A choice sticks whatever language the customer writes next; a guess gives way to it."""
        self.state["language"] = language
        self.state["language_chosen"] = chosen
        return [Reply(self.t("language_set" if chosen else "language_guess"), intent=intent)]

    async def stop(self, intent: str | None) -> list[Reply]:
        await self.engine.crm.customers.set_consent(customer_id=self.customer_id, consent=False)
        return [Reply(self.t("stopped"), intent=intent)]

    async def hand_off(self, reason: HandoffReason, message: str, *, intent: str | None) -> list[Reply]:
        self.state["fallbacks"] = 0
        priority = TicketPriority.HIGH if reason == HandoffReason.COMPLAINT else TicketPriority.NORMAL
        ticket = await self.engine.crm.conversations.hand_off(
            conversation_id=self.conversation_id, reason=reason, subject=ticket_subject(reason, message),
            priority=priority, intent=intent,
        )
        # The ticket's own first-response target: the customer's tier (and the SLA policy) set the promised wait.
        target = (ticket.sla_due_at - ticket.created_at if ticket.sla_due_at and ticket.created_at
                  else self.engine.crm.settings.sla_target(ticket.priority))
        minutes = int(target.total_seconds() // 60)
        wait = self.t("handoff_wait", minutes=minutes) if minutes <= 240 else ""
        return [Reply(self.t("handoff", ticket=ticket.id, wait=wait), decision="handoff", intent=intent)]
