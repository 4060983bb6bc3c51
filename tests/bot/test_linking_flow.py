"""Linking a chat with a one-time code an agent made: `/link CODE` in the web chat (real HTTP server) and the
`/start link_CODE` deep link on Telegram (aiogram's real polling loop, fake Bot API). A linked chat sees its
customer's points; a second chat with the same code, an expired or an unknown code sees nobody's data. A VIP
customer (Gold: tickets at least high) gets a person after the bot's first miss, with what the bot tried."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from crm_store import models as m
from crm_store.coltypes import utcnow
from kefu.sample_data import load_sample_shop
from tests.bot import test_loyalty_flow, test_webchat
from tests.bot.conftest import Stack
from tests.fake_telegram import FakeTelegram

# The running channels of the web chat and loyalty tests (registered here as this module's fixtures).
served = test_webchat.served
tg = test_loyalty_flow.tg
inline = test_loyalty_flow.inline

EMILY_PHONE = test_loyalty_flow.EMILY_PHONE  # Gold in the sample shop: her tickets are at least high
JAMES_EMAIL = "james.obrien@example.com"  # Silver: no tier rule


@pytest.fixture
async def web(served: test_webchat.Served, stack: Stack) -> test_webchat.Served:
    await load_sample_shop(stack.crm)
    return served


async def say(web: test_webchat.Served, visitor: str, text: str = "", payload: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"visitor_id": visitor, "text": text}
    if payload:
        body["payload"] = payload
    response = await test_webchat.post(web, **body)
    assert response.status_code == 200, response.text
    return response.json()


def texts(data: dict[str, Any]) -> str:
    return "\n".join(r["text"] for r in data["replies"])


async def code_for(stack: Stack, *, phone: str | None = None, email: str | None = None) -> tuple[Any, str]:
    customer = await stack.crm.customers.find_by_contact(phone=phone, email=email)
    return customer, (await stack.crm.customers.create_link_token(customer_id=customer.id)).token


async def new_ticket(stack: Stack, customer_id: int) -> Any:
    """The customer's one ticket waiting for an agent (the sample shop's own are assigned or resolved)."""
    (ticket,) = [t for t in (await stack.crm.timeline.customer_360(customer_id=customer_id)).tickets
                 if t.status == "new"]
    return ticket


async def chats_of(stack: Stack, customer_id: int) -> set[str]:
    return {i.external_id for i in await stack.crm.customers.identities(customer_id=customer_id)}


async def test_web_chat_links_by_code_and_a_second_chat_sees_nobodys_data(web: test_webchat.Served,
                                                                          stack: Stack) -> None:
    emily, token = await code_for(stack, phone=EMILY_PHONE)
    balance = (await stack.crm.loyalty.summary(customer_id=emily.id)).balance
    assert balance > 0

    before = await say(web, "v-link-1", "how many points do I have?")
    assert "/link CODE" in texts(before) and "points." not in texts(before)

    linked = await say(web, "v-link-1", f"/link {token}")
    assert "Emily Carter" in texts(linked) and f"You have {balance} points." in texts(linked)
    stored = [m.text for m in await stack.crm.conversations.history(channel="webchat", external_id="v-link-1")]
    assert f"/link {token[:4]}…" in stored and not any(token in text for text in stored)  # no credential kept
    assert "Your tier: Gold." in texts(linked)
    asked = await say(web, "v-link-1", "how many points do I have?")
    assert texts(asked).startswith(f"You have {balance} points.")
    assert asked["conversation_id"] == linked["conversation_id"]

    refused = await say(web, "v-link-2", f"/link {token}")
    assert "already been used" in texts(refused) and "Emily" not in texts(refused)
    assert [b["payload"] for b in refused["replies"][0]["buttons"]] == ["human:yes"]
    nosy = await say(web, "v-link-2", "how many points do I have?")
    assert "/link CODE" in texts(nosy) and f"{balance}" not in texts(nosy)
    chats = await chats_of(stack, emily.id)
    assert "v-link-1" in chats and "v-link-2" not in chats


async def test_web_chat_linked_history_catalogue_and_a_single_redemption(web: test_webchat.Served,
                                                                        stack: Stack) -> None:
    emily, token = await code_for(stack, phone=EMILY_PHONE)
    before = await stack.crm.loyalty.summary(customer_id=emily.id)
    await say(web, "v-redeem", f"/link {token}")

    history = await say(web, "v-redeem", "show my recent points transactions")
    assert texts(history).startswith("Your latest points:")
    catalogue = await say(web, "v-redeem", "what rewards can I get with my points?")
    choices = [b["payload"] for b in catalogue["replies"][0]["buttons"]]
    assert choices and all(p.startswith("redeem:") for p in choices)
    prompt = await say(web, "v-redeem", payload=choices[0])
    confirm = next(b["payload"] for b in prompt["replies"][0]["buttons"] if b["payload"].startswith("confirm:"))

    done, again = await say(web, "v-redeem", payload=confirm), await say(web, "v-redeem", payload=confirm)
    after = await stack.crm.loyalty.summary(customer_id=emily.id)
    assert texts(done).startswith("Done! ") and f"balance is now {after.balance}" in texts(done)
    assert texts(again).startswith("That one is already redeemed")
    assert before.balance > after.balance == await stack.crm.loyalty.ledger_sum(customer_id=emily.id)


async def test_web_chat_refuses_expired_unknown_and_missing_codes(web: test_webchat.Served, stack: Stack) -> None:
    emily, token = await code_for(stack, phone=EMILY_PHONE)
    async with stack.crm.db.sessionmaker() as s:
        await s.execute(update(m.LinkToken).values(expires_at=utcnow() - timedelta(minutes=1)))
        await s.commit()
    expired = await say(web, "v-exp", f"/link {token}")
    assert "expired" in texts(expired) and "Emily" not in texts(expired)
    unknown = await say(web, "v-exp", "/link Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4")
    assert "don't recognize" in texts(unknown)
    missing = await say(web, "v-exp", "/link")
    assert "/link CODE" in texts(missing)
    nosy = await say(web, "v-exp", "how many points do I have?")
    assert "/link CODE" in texts(nosy) and "You have" not in texts(nosy)
    assert "v-exp" not in await chats_of(stack, emily.id)


async def test_web_chat_in_chinese(web: test_webchat.Served, stack: Stack) -> None:
    await say(web, "v-zh", "你好")
    refused = await say(web, "v-zh", "/link Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4")
    assert "无法识别该关联码" in texts(refused)
    _, token = await code_for(stack, phone=EMILY_PHONE)
    linked = await say(web, "v-zh", f"/link {token}")
    assert "本对话已与您的会员账户关联" in texts(linked) and "会员等级" in texts(linked)


async def test_web_chat_vip_gets_a_person_after_one_miss_others_after_two(web: test_webchat.Served,
                                                                         stack: Stack) -> None:
    emily, emily_token = await code_for(stack, phone=EMILY_PHONE)
    await say(web, "v-vip", f"/link {emily_token}")
    answered = await say(web, "v-vip", "how long does shipping take?")
    assert answered["replies"][0]["decision"] == "answer"
    handed = await say(web, "v-vip", payload="kb:none")  # "None of these": the bot's first miss
    assert handed["replies"][0]["decision"] == "handoff"
    assert "usually within 240 minutes" in texts(handed)  # the promise follows the tier's priority
    ticket = await new_ticket(stack, emily.id)
    assert (ticket.priority, ticket.context["tier"], ticket.context["reason"]) == ("high", "Gold", "no_answer")
    assert "ask_question" in ticket.context["intents"]
    assert [a["external_id"] for a in ticket.context["articles"]] == ["shop-en-shipping"]
    assert ticket.context["last_customer_message"] == "how long does shipping take?"

    james, james_token = await code_for(stack, email=JAMES_EMAIL)
    await say(web, "v-silver", f"/link {james_token}")
    first = await say(web, "v-silver", payload="kb:none")
    assert first["replies"][0]["decision"] == "no_answer"
    second = await say(web, "v-silver", payload="kb:none")
    assert second["replies"][0]["decision"] == "handoff"
    assert (await new_ticket(stack, james.id)).priority == "normal"


async def test_telegram_deep_link_links_and_a_vip_miss_goes_to_a_person(tg: FakeTelegram, stack: Stack) -> None:
    emily, token = await code_for(stack, phone=EMILY_PHONE)
    balance = (await stack.crm.loyalty.summary(customer_id=emily.id)).balance

    tg.user_message(300, f"/start link_{token}")
    (linked,) = await tg.wait_for_messages(300, 1)
    assert "Emily Carter" in linked["text"] and f"You have {balance} points." in linked["text"]
    tg.user_message(300, "how many points do I have?")
    assert (await tg.wait_for_messages(300, 2))[1]["text"].startswith(f"You have {balance} points.")

    tg.user_message(301, f"/start link_{token}")  # the same link opened in another chat
    (refused,) = await tg.wait_for_messages(301, 1)
    assert "already been used" in refused["text"] and inline(refused) == [("Talk to a person", "human:yes")]
    tg.user_message(301, "how many points do I have?")
    nosy = (await tg.wait_for_messages(301, 2))[1]
    assert "share your phone" in nosy["text"] and str(balance) not in nosy["text"]

    tg.user_message(300, "how long does shipping take?")
    answer = (await tg.wait_for_messages(300, 3))[2]
    assert "Source: " in answer["text"]
    tg.callback(300, "kb:none", message_id=answer["message_id"])
    handoff = (await tg.wait_for_messages(300, 4))[3]
    assert "ticket #" in handoff["text"] and "240 minutes" in handoff["text"]
    ticket = await new_ticket(stack, emily.id)
    assert f"#{ticket.id}" in handoff["text"]
    assert (ticket.priority, ticket.context["tier"]) == ("high", "Gold")
    assert ticket.context["intents"][:2] == ["link_account", "check_points"]
    assert [a["external_id"] for a in ticket.context["articles"]] == ["shop-en-shipping"]


async def test_the_widget_page_sends_the_code_from_its_address(web: test_webchat.Served) -> None:
    async with httpx.AsyncClient(base_url=web.url) as client:
        page = (await client.get("/webchat", params={"link": "abc"})).text
    assert 'get("link")' in page and '"/link " +' in page and "history.replaceState" in page
