"""Surveys end to end: CSAT asked in the customer's chat when an agent resolves the ticket, NPS when a campaign
sends it; answered with buttons and typed comments, on Telegram (polling and webhook, against the fake Bot API
server) and through the web chat (JSON API + Server-Sent Events), carried by the real event bus."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.crm import CRM
from crm_store.enums import SenderType
from crm_store.events import SurveyInvited
from crm_store.services.surveys import OptedOut
from tests import support
from tests.bot import test_webchat
from tests.bot.conftest import Stack, TelegramRun
from tests.bot.test_webchat import Served

served = test_webchat.served


def buttons(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


async def conversation_of(crm: CRM, channel: str, external_id: str) -> int:
    for _ in range(100):
        history = await crm.conversations.history(channel=channel, external_id=external_id)
        if history:
            return history[-1].conversation_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"no conversation for {channel}:{external_id}")


async def telegram_customer(telegram: TelegramRun, chat_id: int) -> int:
    """A Telegram user says hello; their CRM customer's id."""
    telegram.tg.user_message(chat_id, "hello")
    await telegram.tg.wait_for_messages(chat_id, 1)
    conversation_id = await conversation_of(telegram.stack.crm, "telegram", str(chat_id))
    return (await telegram.stack.crm.conversations.get(conversation_id=conversation_id)).customer_id


async def agent_resolves(crm: CRM, conversation_id: int, *, reply: str) -> tuple[Any, Any]:
    """What the console will do: an agent takes the ticket, replies, and resolves it."""
    agent = await support.make_agent(crm, email=f"agent{conversation_id}@example.com", name="Sam")
    ticket = await crm.conversations.active_ticket(conversation_id=conversation_id)
    assert ticket is not None
    await crm.conversations.assign(ticket_id=ticket.id, agent_id=agent.id, by_agent_id=agent.id)
    await crm.conversations.record_outgoing(conversation_id=conversation_id, sender=SenderType.AGENT,
                                            agent_id=agent.id, text=reply)
    await crm.conversations.resolve(ticket_id=ticket.id, by_agent_id=agent.id)
    return agent, ticket


async def invitation_for(crm: CRM, ticket_id: int) -> Any:
    async with crm.db.sessionmaker() as s:
        from sqlalchemy import select

        row = (await s.execute(select(m.SurveyInvitation).where(m.SurveyInvitation.ticket_id == ticket_id)))
        invitation = row.scalar_one()
    return await crm.surveys.invitation(invitation_id=invitation.id)


# --- Telegram ---------------------------------------------------------------------------------------------------


async def test_csat_after_resolution_on_telegram(telegram: TelegramRun) -> None:
    tg, crm = telegram.tg, telegram.stack.crm
    tg.user_message(300, "/human")
    (handoff,) = await tg.wait_for_messages(300, 1)
    assert "ticket #" in handoff["text"]
    conversation_id = await conversation_of(crm, "telegram", "300")
    agent, ticket = await agent_resolves(crm, conversation_id, reply="Your parcel left our warehouse today.")

    messages = await tg.wait_for_messages(300, 3)
    assert messages[1]["text"] == "Your parcel left our warehouse today."
    csat = messages[2]
    assert csat["text"].startswith("Your request has been resolved.") and "How satisfied" in csat["text"]
    invitation = await invitation_for(crm, ticket.id)
    assert invitation.agent_id == agent.id and invitation.conversation_id == conversation_id
    assert buttons(csat) == [f"sv:{invitation.id}:rating:{v}" for v in range(1, 6)]
    assert len(csat["reply_markup"]["inline_keyboard"]) == 1  # the five stars share one row

    tg.callback(300, f"sv:{invitation.id}:rating:4", message_id=csat["message_id"])
    comment_question = (await tg.wait_for_messages(300, 4))[3]
    assert "Anything you'd like to add?" in comment_question["text"]
    assert buttons(comment_question) == [f"sv:{invitation.id}:comment:-"]  # Skip
    tg.user_message(300, "Sam was quick and kind")
    thanks = (await tg.wait_for_messages(300, 5))[4]
    assert thanks["text"] == "Thank you for your feedback! 🙏"

    tg.callback(300, f"sv:{invitation.id}:rating:1", message_id=csat["message_id"])  # a late second tap
    late = (await tg.wait_for_messages(300, 6))[5]
    assert late["text"] == "You've already answered that one, thank you!"
    assert await crm.surveys.answers(invitation_id=invitation.id) == {"rating": 4, "comment": "Sam was quick and kind"}
    done = await crm.surveys.invitation(invitation_id=invitation.id)
    assert (done.status, done.score) == ("completed", 4)

    # The survey is over: the next message is a question for the bot again.
    tg.user_message(300, "how long does shipping take?")
    answer = (await tg.wait_for_messages(300, 7))[6]
    assert "Source: " in answer["text"]


async def test_csat_in_chinese_and_skipping_the_comment(telegram: TelegramRun) -> None:
    tg, crm = telegram.tg, telegram.stack.crm
    tg.user_message(301, "转人工", language_code="zh-hans")
    await tg.wait_for_messages(301, 1)
    conversation_id = await conversation_of(crm, "telegram", "301")
    _, ticket = await agent_resolves(crm, conversation_id, reply="您好，已为您处理。")
    csat = (await tg.wait_for_messages(301, 3))[2]
    assert csat["text"].startswith("您的问题已处理完毕") and "满意" in csat["text"]
    invitation = await invitation_for(crm, ticket.id)
    tg.callback(301, f"sv:{invitation.id}:rating:5", message_id=csat["message_id"])
    comment_question = (await tg.wait_for_messages(301, 4))[3]
    assert "还有什么想告诉我们的吗" in comment_question["text"]
    tg.callback(301, f"sv:{invitation.id}:comment:-", message_id=comment_question["message_id"])
    assert (await tg.wait_for_messages(301, 5))[4]["text"] == "感谢您的反馈！🙏"
    assert await crm.surveys.answers(invitation_id=invitation.id) == {"rating": 5, "comment": None}


async def test_nps_campaign_on_telegram_asked_once_and_scored(telegram: TelegramRun) -> None:
    tg, crm, engine = telegram.tg, telegram.stack.crm, telegram.stack.engine
    customer_id = await telegram_customer(telegram, 302)

    invitation = await crm.surveys.invite(customer_id=customer_id, key="nps", campaign="2026-q4")
    nps = (await tg.wait_for_messages(302, 2))[1]
    assert nps["text"].startswith("A quick question from Kefu Tea & Co.:") and "recommend" in nps["text"]
    assert buttons(nps) == [f"sv:{invitation.id}:score:{v}" for v in range(11)]
    assert [len(row) for row in nps["reply_markup"]["inline_keyboard"]] == [6, 5]
    # The campaign sends again (a retry) and the event is delivered twice (at-least-once): asked once.
    assert (await crm.surveys.invite(customer_id=customer_id, key="nps", campaign="2026-q4")).duplicate
    await engine.on_event(SurveyInvited(invitation_id=invitation.id, survey_id=invitation.survey_id,
                                        customer_id=customer_id, kind="nps", conversation_id=invitation.conversation_id,
                                        channel="telegram", external_id="302"))

    tg.callback(302, f"sv:{invitation.id}:score:9", message_id=nps["message_id"])
    why = (await tg.wait_for_messages(302, 3))[2]
    assert "main reason" in why["text"]
    tg.user_message(302, "Great oolong, fast delivery")
    assert (await tg.wait_for_messages(302, 4))[3]["text"] == "Thank you for your feedback! 🙏"
    await asyncio.sleep(0.3)
    assert len(tg.messages_to(302)) == 4
    results = await crm.surveys.results(key="nps", campaign="2026-q4")
    assert (results.sent, results.answered, results.promoters, results.score) == (1, 1, 1, 100.0)


async def test_an_expired_or_someone_elses_survey_is_not_answered(telegram: TelegramRun) -> None:
    tg, crm = telegram.tg, telegram.stack.crm
    customer_id = await telegram_customer(telegram, 303)
    invitation = await crm.surveys.invite(customer_id=customer_id, key="nps", campaign="spring")
    nps = (await tg.wait_for_messages(303, 2))[1]

    tg.user_message(304, "hi")  # another chat forges a press on 303's survey
    await tg.wait_for_messages(304, 1)
    tg.callback(304, f"sv:{invitation.id}:score:0", message_id=1)
    assert (await tg.wait_for_messages(304, 2))[1]["text"] == "Sorry, that survey isn't available."

    async with crm.db.sessionmaker() as s:
        await s.execute(update(m.SurveyInvitation).where(m.SurveyInvitation.id == invitation.id)
                        .values(expires_at=utcnow() - timedelta(minutes=1)))
        await s.commit()
    tg.callback(303, f"sv:{invitation.id}:score:10", message_id=nps["message_id"])
    assert (await tg.wait_for_messages(303, 3))[2]["text"] == "Sorry, this survey has closed."
    assert await crm.surveys.answers(invitation_id=invitation.id) == {}


async def test_after_stop_no_survey_is_sent(telegram: TelegramRun) -> None:
    tg, crm = telegram.tg, telegram.stack.crm
    tg.user_message(305, "/stop")
    assert "won't receive surveys" in (await tg.wait_for_messages(305, 1))[0]["text"]
    conversation_id = await conversation_of(crm, "telegram", "305")
    customer_id = (await crm.conversations.get(conversation_id=conversation_id)).customer_id
    with pytest.raises(OptedOut):
        await crm.surveys.invite(customer_id=customer_id, key="nps", campaign="2026-q4")
    tg.user_message(305, "/human")
    await tg.wait_for_messages(305, 2)
    await agent_resolves(crm, conversation_id, reply="Done!")
    await tg.wait_for_messages(305, 3)  # the agent's reply
    await asyncio.sleep(0.5)
    assert len(tg.messages_to(305)) == 3  # and no CSAT


# --- web chat ---------------------------------------------------------------------------------------------------


@pytest.fixture
def webchat(served: Served) -> str:
    """The web chat on a real HTTP server (tests/bot/test_webchat.py's fixture): its base URL."""
    return served.url


async def test_csat_after_resolution_in_the_web_chat(webchat: str, stack: Stack) -> None:
    crm = stack.crm
    pushed: list[dict[str, Any]] = []
    connected = asyncio.Event()

    async def listen() -> None:
        async with httpx.AsyncClient(base_url=webchat, timeout=None) as client, client.stream(
            "GET", "/webchat/api/events", params={"visitor_id": "v-csat"}
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    pushed.append(json.loads(line[len("data: "):]))
                    if len(pushed) == 2:
                        return

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(connected.wait(), timeout=10)
    async with httpx.AsyncClient(base_url=webchat, timeout=30) as client:
        async def say(**body: Any) -> dict[str, Any]:
            response = await client.post("/webchat/api/messages", json={"visitor_id": "v-csat", **body})
            assert response.status_code == 200, response.text
            return response.json()

        handed = await say(text="I want to talk to a human")
        assert handed["replies"][0]["decision"] == "handoff"
        relayed = await say(text="my teapot arrived broken")
        assert relayed["relayed"] is True and relayed["replies"] == []  # the agent side gets it, not the bot
        _, ticket = await agent_resolves(crm, handed["conversation_id"], reply="A new teapot is on its way.")
        await asyncio.wait_for(listener, timeout=15)
        agent_reply, csat = pushed
        assert agent_reply["decision"] == "agent" and agent_reply["text"] == "A new teapot is on its way."
        invitation = await invitation_for(crm, ticket.id)
        assert "How satisfied" in csat["text"] and csat["conversation_id"] == handed["conversation_id"]
        assert [b["payload"] for b in csat["buttons"]] == [f"sv:{invitation.id}:rating:{v}" for v in range(1, 6)]

        # A reopened page shows the survey too (sent while it may have been closed).
        history = (await client.get("/webchat/api/messages", params={"visitor_id": "v-csat"})).json()["messages"]
        assert [x["sender"] for x in history] == ["me", "bot", "me", "agent", "bot"]
        assert history[-1]["buttons"] == csat["buttons"]

        rated = await say(payload=f"sv:{invitation.id}:rating:2")
        assert "Anything you'd like to add?" in rated["replies"][0]["text"]
        thanked = await say(text="It took three days to get an answer")
        assert thanked["replies"][0]["text"] == "Thank you for your feedback! 🙏"
        assert thanked["replies"][0]["decision"] == "flow"
    assert await crm.surveys.answers(invitation_id=invitation.id) == {
        "rating": 2, "comment": "It took three days to get an answer"}
    kinds = [e.kind for e in await crm.timeline.timeline(customer_id=ticket.customer_id)]
    assert kinds.index("ticket.resolved") < kinds.index("survey.sent") < kinds.index("survey.answered")


async def test_nps_in_the_web_chat_for_a_visitor_who_is_away(webchat: str, stack: Stack) -> None:
    crm = stack.crm
    async with httpx.AsyncClient(base_url=webchat, timeout=30) as client:
        first = await client.post("/webchat/api/messages", json={"visitor_id": "v-nps", "text": "你好"})
        customer_id = (await crm.conversations.get(conversation_id=first.json()["conversation_id"])).customer_id
        invitation = await crm.surveys.invite(customer_id=customer_id, key="nps", campaign="2026-q4")
        for _ in range(100):  # nobody listens: the question waits in the chat's history
            history = (await client.get("/webchat/api/messages", params={"visitor_id": "v-nps"})).json()["messages"]
            if len(history) == 3:
                break
            await asyncio.sleep(0.05)
        question = history[-1]
        assert question["text"].startswith("Kefu Tea & Co. 想请您回答一个小问题") and len(question["buttons"]) == 11
        scored = await client.post("/webchat/api/messages", json={"visitor_id": "v-nps",
                                                                   "payload": f"sv:{invitation.id}:score:6"})
        assert "主要原因" in scored.json()["replies"][0]["text"]
        skipped = await client.post("/webchat/api/messages", json={"visitor_id": "v-nps",
                                                                    "payload": f"sv:{invitation.id}:why:-"})
        assert skipped.json()["replies"][0]["text"] == "感谢您的反馈！🙏"
    results = await crm.surveys.results(key="nps", campaign="2026-q4")
    assert (results.detractors, results.score) == (1, -100.0)
