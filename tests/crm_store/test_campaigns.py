"""Campaigns: who is reached (consenting members of the segment with a chat, once each), in batches that a crash
cannot split, in the customer's language, outside quiet hours; progress and results. The delivery to Telegram of
what a campaign records is bot.delivery's (tests/kefu/test_production.py kills a worker in the middle of one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from crm_store import models as m
from crm_store.enums import DeliveryStatus
from crm_store.errors import ConflictError, InvalidSegment, NotFound
from crm_store.events import BotPushed, SurveyInvited
from crm_store.services import campaigns as campaigns_module
from crm_store.services.campaigns import InvalidCampaign

VIP = {"field": "tags", "op": "has_any", "value": ["vip"]}


async def customer(crm: Any, name: str, *, chat: str | None = "telegram", consent: bool | None = True,
                   tags: tuple[str, ...] = ("vip",), language: str = "en") -> int:
    """A customer with a chat (`chat` channel, external id from the name) and a consent state: True, False (never
    given), or None (given, then withdrawn: /stop)."""
    if chat is None:
        created = await crm.customers.create(name=name, language=language)
        customer_id = created.id
    else:
        recorded = await crm.conversations.record_incoming(channel=chat, external_id=f"{chat}-{name}", text="hi",
                                                           display_name=name)
        customer_id = recorded.customer_id
    await crm.customers.update_profile(customer_id=customer_id, name=name, tags=list(tags), language=language)
    if consent is None:
        await crm.customers.set_consent(customer_id=customer_id, consent=True)
        await crm.customers.set_consent(customer_id=customer_id, consent=False)
    elif consent:
        await crm.customers.set_consent(customer_id=customer_id, consent=True)
    return customer_id


async def run_to_the_end(crm: Any, campaign_id: int, **kwargs: Any) -> list[int]:
    """Step until the campaign finishes; each batch's size."""
    sizes = []
    while (await crm.campaigns.get(campaign_id=campaign_id)).status == "running":
        sizes.append(await crm.campaigns.step(campaign_id=campaign_id, **kwargs))
        assert len(sizes) < 100
    return sizes


async def test_an_nps_campaign_reaches_each_consenting_member_with_a_chat_once(crm: Any, bus: Any) -> None:
    anna = await customer(crm, "Anna")
    bo = await customer(crm, "Bo", chat="webchat")
    await customer(crm, "Cai", consent=False)  # never consented
    await customer(crm, "Dev", consent=None)  # withdrew (/stop)
    await customer(crm, "Eve", tags=("wholesale",))  # not in the segment
    fay = await customer(crm, "Fay", chat=None)  # no chat to ask in
    gus = await customer(crm, "Gus")
    segment = await crm.segments.create(name="VIPs", rules=VIP)
    campaign = await crm.campaigns.create(name="Q4 NPS", kind="nps", segment_id=segment.id, per_second=2)
    assert await crm.campaigns.audience(campaign_id=campaign.id) == (6, 4)  # members; consenting
    with pytest.raises(ConflictError):
        await crm.campaigns.resume(campaign_id=campaign.id)
    assert await crm.campaigns.step(campaign_id=campaign.id) == 0  # a draft sends nothing
    await crm.campaigns.launch(campaign_id=campaign.id)
    assert await run_to_the_end(crm, campaign.id) == [2, 2, 0]  # a full batch may be the last: one more looks
    invited = bus.of(SurveyInvited)
    assert sorted(e.customer_id for e in invited) == [anna, bo, gus]
    assert {e.channel for e in invited if e.customer_id == bo} == {"webchat"}
    progress = await crm.campaigns.progress(campaign_id=campaign.id)
    assert (progress.recipients, progress.queued, progress.no_chat, progress.opted_out) == (4, 3, 1, 0)
    assert progress.campaign.status == "finished" and progress.campaign.cursor == gus
    # Stepping a finished campaign, or launching it again, sends nothing more.
    assert await crm.campaigns.step(campaign_id=campaign.id) == 0
    with pytest.raises(ConflictError):
        await crm.campaigns.launch(campaign_id=campaign.id)
    assert len(bus.of(SurveyInvited)) == 3
    results = await crm.surveys.results(key="nps", campaign=campaign.key)
    assert (results.sent, results.answered) == (3, 0)
    assert fay not in {e.customer_id for e in invited}


async def test_a_batch_that_fails_half_way_records_nothing_and_the_next_one_repeats_nothing(
    crm: Any, bus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await customer(crm, name) for name in ("Ann", "Ben", "Cy", "Di", "Ed")]
    campaign = await crm.campaigns.create(name="Tea news", kind="message", rules=VIP, per_second=3,
                                          message={"en": "Hi {customer.first_name}, new teas are in."})
    await crm.campaigns.launch(campaign_id=campaign.id)
    real_reach, calls = campaigns_module._reach, 0

    async def dying_reach(*args: Any) -> Any:  # the worker dies on the batch's second customer
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("killed")
        return await real_reach(*args)

    monkeypatch.setattr(campaigns_module, "_reach", dying_reach)
    with pytest.raises(RuntimeError):
        await crm.campaigns.step(campaign_id=campaign.id)
    assert bus.of(BotPushed) == []
    assert (await crm.campaigns.get(campaign_id=campaign.id)).cursor == 0
    assert (await crm.campaigns.progress(campaign_id=campaign.id)).recipients == 0
    monkeypatch.setattr(campaigns_module, "_reach", real_reach)
    assert await run_to_the_end(crm, campaign.id) == [3, 2]
    pushed = bus.of(BotPushed)
    assert [e.customer_id for e in pushed] == ids
    assert pushed[0].text == "Hi Ann, new teas are in."
    assert (await crm.campaigns.progress(campaign_id=campaign.id)).queued == 5


async def test_messages_speak_the_customers_language_and_a_course_invitation_has_its_start_button(
    crm: Any, bus: Any
) -> None:
    await customer(crm, "Li Wei", language="zh")
    await customer(crm, "Sam Jones", language="fr")  # no French text: English
    course = await crm.courses.create_course(key="tea-101", title="Tea Basics", language="en", lessons=[
        {"title": "Leaves", "body": "Camellia sinensis."}])
    campaign = await crm.campaigns.create(
        name="Course invite", kind="course", rules=VIP, course_id=course.id, channels=["telegram"],
        message={"en": "{customer.first_name}, learn tea with us!", "zh": "{customer.first_name}，来学茶吧！"})
    await crm.campaigns.launch(campaign_id=campaign.id)
    await run_to_the_end(crm, campaign.id)
    texts = {e.text: e.payload for e in bus.of(BotPushed)}
    assert set(texts) == {"Li，来学茶吧！", "Sam, learn tea with us!"}
    assert all(p["buttons"] == [{"label": "▶ Tea Basics", "payload": f"co:s:{course.id}"}] for p in texts.values())


async def test_nothing_is_sent_in_quiet_hours_in_the_campaigns_time_zone(crm: Any, bus: Any) -> None:
    await customer(crm, "Ann")
    campaign = await crm.campaigns.create(name="Night owls", kind="message", rules=VIP, message={"en": "Hello"},
                                          quiet_start=22, quiet_end=8, timezone="Asia/Shanghai")
    await crm.campaigns.launch(campaign_id=campaign.id)
    night = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    morning = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)  # 07:59 the next day
    day = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # 08:00
    assert await crm.campaigns.step(campaign_id=campaign.id, now=night) == 0
    assert await crm.campaigns.step(campaign_id=campaign.id, now=morning) == 0
    assert bus.of(BotPushed) == []
    assert await crm.campaigns.run_due(now=day) == 1
    assert len(bus.of(BotPushed)) == 1


async def test_progress_counts_deliveries_and_answers(crm: Any, bus: Any) -> None:
    ids = [await customer(crm, name) for name in ("Ann", "Ben", "Cy")]
    campaign = await crm.campaigns.create(name="Ping", kind="message", rules=VIP, message={"en": "Ping"})
    await crm.campaigns.launch(campaign_id=campaign.id)
    await run_to_the_end(crm, campaign.id)
    first, second, _ = bus.of(BotPushed)
    await crm.conversations.mark_delivery(message_id=first.message_id, status=DeliveryStatus.SENT,
                                          channel_message_id="10")
    await crm.conversations.mark_delivery(message_id=second.message_id, status=DeliveryStatus.FAILED)
    progress = await crm.campaigns.progress(campaign_id=campaign.id)
    assert (progress.queued, progress.sent, progress.failed, progress.answered) == (3, 1, 1, 0)
    nps = await crm.campaigns.create(name="NPS", kind="nps", rules=VIP)
    await crm.campaigns.launch(campaign_id=nps.id)
    await run_to_the_end(crm, nps.id)
    invitation = bus.of(SurveyInvited)[0]
    await crm.surveys.answer(invitation_id=invitation.invitation_id, question_id="score", value=10,
                             channel="telegram", external_id="telegram-Ann")
    progress = await crm.campaigns.progress(campaign_id=nps.id)
    assert (progress.queued, progress.answered, progress.response_rate) == (3, 1, pytest.approx(1 / 3))
    assert (await crm.surveys.results(key="nps", campaign=nps.key)).score == 100.0
    assert invitation.customer_id == ids[0]


async def test_pause_resume_and_cancel(crm: Any, bus: Any) -> None:
    await customer(crm, "Ann")
    campaign = await crm.campaigns.create(name="Paused", kind="message", rules=VIP, message={"en": "Hi"})
    await crm.campaigns.launch(campaign_id=campaign.id)
    await crm.campaigns.pause(campaign_id=campaign.id)
    assert await crm.campaigns.run_due() == 0
    await crm.campaigns.resume(campaign_id=campaign.id)
    await crm.campaigns.cancel(campaign_id=campaign.id)
    assert await crm.campaigns.run_due() == 0 and bus.of(BotPushed) == []
    with pytest.raises(ConflictError):
        await crm.campaigns.resume(campaign_id=campaign.id)
    with pytest.raises(NotFound):
        await crm.campaigns.get(campaign_id=9999)


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": " "}, "needs a name"),
    ({"kind": "sms"}, "sends one of: nps, csat, course, message"),
    ({"rules": None}, "Choose a segment"),
    ({"channels": ["email"]}, "Telegram, the web chat, or both"),
    ({"quiet_start": 22}, "Quiet hours"),
    ({"quiet_start": 8, "quiet_end": 8}, "Quiet hours"),
    ({"quiet_start": 22, "quiet_end": 24}, "Quiet hours"),
    ({"timezone": "Mars/Olympus"}, "Unknown time zone"),
    ({"per_second": 26}, "1 to 25 messages a second"),
    ({"kind": "message", "message": {"en": "  "}}, "Write the message"),
    ({"kind": "course"}, "published course"),
    ({"kind": "csat", "survey_key": "nps"}, "active CSAT survey"),
    ({"rules": {"field": "tier", "op": "gt", "value": 1}}, "tier: no operator 'gt'"),
])
async def test_a_campaign_that_cannot_be_made_is_explained(crm: Any, changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"name": "Bad", "kind": "nps", "rules": VIP} | changes
    with pytest.raises((InvalidCampaign, InvalidSegment), match=message):
        await crm.campaigns.create(**fields)


async def test_a_name_is_taken_once(crm: Any) -> None:
    await crm.campaigns.create(name="Spring", kind="nps", rules=VIP)
    with pytest.raises(ConflictError, match="already called 'Spring'"):
        await crm.campaigns.create(name="Spring", kind="nps", rules=VIP)


async def test_what_a_lost_announcement_left_unsent_is_announced_again_on_telegram(crm: Any, bus: Any) -> None:
    """Redis was away just after a batch's commit: its BotPushed / SurveyInvited never reached anyone. The worker's
    timer announces again the Telegram messages still queued and the invitations whose question was never asked."""
    ann = await customer(crm, "Ann")
    bo = await customer(crm, "Bo", chat="webchat")  # its messages are in the chat's history: no delivery to wait for
    news = await crm.campaigns.create(name="News", kind="message", rules=VIP, message={"en": "News!"})
    nps = await crm.campaigns.create(name="NPS", kind="nps", rules=VIP)
    for campaign in (news, nps):
        await crm.campaigns.launch(campaign_id=campaign.id)
        await run_to_the_end(crm, campaign.id)
    (lost_push,) = [e for e in bus.of(BotPushed) if e.channel == "telegram"]
    lost_invitations = {e.invitation_id: e.customer_id for e in bus.of(SurveyInvited)}
    async with crm.db.sessionmaker() as session:
        await session.execute(update(m.Message).values(created_at=m.utcnow() - timedelta(minutes=5)))
        await session.execute(update(m.SurveyInvitation).values(sent_at=m.utcnow() - timedelta(minutes=5)))
        await session.commit()
    bus.published.clear()
    again, within = timedelta(minutes=2), timedelta(days=1)
    assert await crm.conversations.announce_stranded(older_than=again, within=within) == 1
    assert await crm.surveys.announce_unasked(older_than=again, within=within) == 2  # asked in no chat yet
    (push,) = bus.of(BotPushed)
    assert (push.message_id, push.customer_id, push.text, push.payload) == (
        lost_push.message_id, ann, "News!", lost_push.payload)
    assert {e.invitation_id: e.customer_id for e in bus.of(SurveyInvited)} == lost_invitations
    assert set(lost_invitations.values()) == {ann, bo}
    invited = next(e for e in bus.of(SurveyInvited) if e.customer_id == ann)
    # Once sent, and once asked, nothing is announced again.
    await crm.conversations.mark_delivery(message_id=push.message_id, status=DeliveryStatus.SENT)
    await crm.conversations.record_outgoing(conversation_id=invited.conversation_id, sender="bot", text="0-10?",
                                            push=True, idempotency_key=f"survey:{invited.invitation_id}:ask:score")
    async with crm.db.sessionmaker() as session:
        await session.execute(update(m.Message).values(created_at=m.utcnow() - timedelta(minutes=5)))
        await session.commit()
    # The question just pushed is itself a Telegram message still queued: the one thing announced again.
    assert await crm.conversations.announce_stranded(older_than=again, within=within) == 1
    assert await crm.surveys.announce_unasked(older_than=again, within=within) == 1  # Bo's, still not asked


async def test_the_timers_of_several_workers_give_a_campaign_one_batch_a_second(crm: Any, bus: Any) -> None:
    for name in ("Ann", "Ben", "Cy", "Di", "Ed"):
        await customer(crm, name)
    campaign = await crm.campaigns.create(name="Paced", kind="message", rules=VIP, message={"en": "Hi"},
                                          per_second=2)
    await crm.campaigns.launch(campaign_id=campaign.id)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    # Two workers' timers tick in the same second: one batch between them.
    assert [await crm.campaigns.run_due(now=now), await crm.campaigns.run_due(now=now)] == [2, 0]
    assert await crm.campaigns.run_due(now=now + timedelta(milliseconds=999)) == 0
    assert await crm.campaigns.run_due(now=now + timedelta(seconds=1)) == 2
    assert len(bus.of(BotPushed)) == 4


async def test_a_draft_whose_segment_was_deleted_is_not_launched(crm: Any, bus: Any) -> None:
    await customer(crm, "Ann")
    segment = await crm.segments.create(name="Soon gone", rules=VIP)
    campaign = await crm.campaigns.create(name="Orphan", kind="message", segment_id=segment.id, message={"en": "Hi"})
    assert await crm.campaigns.audience(campaign_id=campaign.id) == (1, 1)
    await crm.segments.delete(segment_id=segment.id)
    assert await crm.campaigns.audience(campaign_id=campaign.id) == (0, 0)
    with pytest.raises(InvalidCampaign, match="segment was deleted"):
        await crm.campaigns.launch(campaign_id=campaign.id)
    assert (await crm.campaigns.get(campaign_id=campaign.id)).status == "draft"
    await crm.campaigns.cancel(campaign_id=campaign.id)
    assert await crm.campaigns.audience(campaign_id=campaign.id) == (0, 0)
    assert bus.of(BotPushed) == []
