"""The loyalty flow over Telegram (real aiogram polling, fake Bot API): an unlinked chat sees nobody's data and is
asked for its phone; sharing its own contact links it to the CRM customer; then balance, tier, history, the
catalogue and a redemption whose confirm button redeems once however often it is tapped."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.sample_data import load_sample_shop
from tests.bot.conftest import Stack, TelegramRun
from tests.fake_telegram import FakeTelegram

EMILY_PHONE = "+1 415 555 0132"  # Emily Carter in the sample shop


@pytest.fixture
async def tg(telegram: TelegramRun, stack: Stack) -> FakeTelegram:
    """The sample shop, and the bot on the fake Telegram server (aiogram's polling loop, then the webhook)."""
    await load_sample_shop(stack.crm)
    return telegram.tg


def inline(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]


async def emily(stack: Stack) -> Any:
    return await stack.crm.customers.find_by_contact(phone=EMILY_PHONE)


async def test_an_unlinked_chat_sees_no_data_and_is_asked_for_its_phone(tg: FakeTelegram) -> None:
    tg.user_message(200, "how many points do I have?")
    (ask,) = await tg.wait_for_messages(200, 1)
    assert "share your phone" in ask["text"] and "points." not in ask["text"]
    assert ask["reply_markup"]["keyboard"][0][0]["request_contact"] is True

    tg.contact(200, EMILY_PHONE, user_id=999)  # someone else's contact card: refused
    messages = await tg.wait_for_messages(200, 2)
    assert "your own contact" in messages[1]["text"]


async def test_a_forged_contact_button_links_nothing(tg: FakeTelegram) -> None:
    """Callback data is whatever a (modified) client sends: a button claiming to be a shared contact is not one."""
    tg.user_message(203, "hi")
    (hello,) = await tg.wait_for_messages(203, 1)
    tg.callback(203, f"contact:{EMILY_PHONE}", message_id=hello["message_id"])
    tg.user_message(203, "how many points do I have?")
    messages = await tg.wait_for_messages(203, 3)
    assert "Emily" not in messages[1]["text"]
    assert "share your phone" in messages[2]["text"]  # still not linked: the points stay Emily's


async def test_linking_by_contact_then_balance_history_and_a_single_redemption(tg: FakeTelegram,
                                                                                stack: Stack) -> None:
    customer = await emily(stack)
    before = await stack.crm.loyalty.summary(customer_id=customer.id)
    assert before.balance > 0

    tg.contact(201, EMILY_PHONE)
    (linked,) = await tg.wait_for_messages(201, 1)
    assert "Emily Carter" in linked["text"] and f"You have {before.balance} points." in linked["text"]

    tg.user_message(201, "show my recent points transactions")
    history = (await tg.wait_for_messages(201, 2))[1]
    assert history["text"].startswith("Your latest points:")

    tg.user_message(201, "what rewards can I get with my points?")
    catalogue = (await tg.wait_for_messages(201, 3))[2]
    choices = inline(catalogue)
    assert choices and all(data.startswith("redeem:") for _, data in choices)
    tg.callback(201, choices[0][1], message_id=catalogue["message_id"])
    prompt = (await tg.wait_for_messages(201, 4))[3]
    confirm = next(data for _, data in inline(prompt) if data.startswith("confirm:"))

    tg.callback(201, confirm, message_id=prompt["message_id"])
    tg.callback(201, confirm, message_id=prompt["message_id"])  # a double tap
    replies = await tg.wait_for_messages(201, 6)
    texts = sorted(m["text"] for m in replies[4:6])
    assert texts[0].startswith("Done! ") and texts[1].startswith("That one is already redeemed")
    after = await stack.crm.loyalty.summary(customer_id=customer.id)
    reward_cost = before.balance - after.balance
    assert reward_cost > 0 and f"balance is now {after.balance}" in texts[0]
    assert after.balance == await stack.crm.loyalty.ledger_sum(customer_id=customer.id)


async def test_an_unknown_phone_is_not_linked(tg: FakeTelegram) -> None:
    tg.contact(202, "+44 7700 900999")
    (reply,) = await tg.wait_for_messages(202, 1)
    assert "couldn't find a membership" in reply["text"]
    tg.user_message(202, "how many points do I have?")
    assert "share your phone" in (await tg.wait_for_messages(202, 2))[1]["text"]
