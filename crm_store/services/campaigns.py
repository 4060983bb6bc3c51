"""Campaigns: an NPS or CSAT survey, a course invitation or a message sent to a segment's customers who consented to
marketing (and did not withdraw it), over Telegram and the web chat.

A running campaign goes a batch at a time (`step`, called every second by the worker's timer: `run_due`), in
ascending customer id. One transaction per batch locks the campaign, records each customer's survey invitation or
message and recipient row, and moves the cursor past them, so a worker killed anywhere repeats nothing and skips
nothing: the batch is either all there or not at all, and every record is unique per campaign and customer
(recipient row, invitation dedupe key, message idempotency key). What the batch recorded is announced on the event
bus after the commit, and delivered like any other pushed message (bot.delivery: Telegram's sending limits, the
idempotency marks). A batch is at most `per_second` customers (at most 25 of the ~30 messages a second Telegram
allows one bot; the default of 20 leaves room for the bot's answers), and a campaign gets one batch a second however
many workers run it. Nothing is sent during the campaign's quiet hours, in its time zone.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import String, cast, func, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import CampaignProgress, CampaignView
from crm_store.enums import (
    CampaignKind,
    CampaignStatus,
    Channel,
    DeliveryStatus,
    MessageDirection,
    RecipientStatus,
    SenderType,
    SurveyKind,
)
from crm_store.errors import ConflictError, DomainError, NotFound
from crm_store.events import BotPushed
from crm_store.segments import dump_rule, member_query, parse_rule
from crm_store.services.base import Service
from crm_store.services.canned import render
from crm_store.services.segments import checked_rule
from crm_store.services.surveys import OptedOut, chat_conversation, get_survey, invite_in, latest_chat
from crm_store.uow import UnitOfWork

MAX_NAME = 200
MAX_MESSAGE = 4096
# Telegram allows a bot about thirty messages a second, which its answers to customers share (bot.ratelimit sends
# at most ~28 a second): a campaign takes at most 25 of them, so it never outruns the delivery.
MAX_PER_SECOND = 25
BATCH_EVERY = timedelta(seconds=1)
CHANNELS = (Channel.TELEGRAM.value, Channel.WEBCHAT.value)


class InvalidCampaign(DomainError):
    """A campaign that cannot be made or launched as asked; the message says what to change."""

    code = "invalid_campaign"


class CampaignService(Service):
    async def create(
        self, *, name: str, kind: CampaignKind | str, segment_id: int | None = None,
        rules: Mapping[str, Any] | None = None, survey_key: str | None = None, course_id: int | None = None,
        message: Mapping[str, str] | None = None, channels: Sequence[str] = CHANNELS,
        quiet_start: int | None = None, quiet_end: int | None = None, timezone: str = "UTC", per_second: int = 20,
        agent_id: int | None = None,
    ) -> CampaignView:
        """A draft campaign to a saved segment (or to `rules`); nothing is sent before `launch`."""
        try:
            kind = CampaignKind(kind)
        except ValueError:
            raise InvalidCampaign(f"A campaign sends one of: {', '.join(k.value for k in CampaignKind)}.") from None
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidCampaign(f"A campaign needs a name of 1 to {MAX_NAME} characters.")
        if (segment_id is None) == (rules is None):
            raise InvalidCampaign("Choose a segment (or give rules) for the campaign.")
        if not channels or not set(channels) <= set(CHANNELS):
            raise InvalidCampaign("A campaign goes to Telegram, the web chat, or both.")
        if (quiet_start is None) != (quiet_end is None) or any(
                h is not None and not 0 <= h <= 23 for h in (quiet_start, quiet_end)) or (
                quiet_start is not None and quiet_start == quiet_end):
            raise InvalidCampaign("Quiet hours are two different hours from 0 to 23 (from, until), or none.")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidCampaign(f"Unknown time zone {timezone!r} (use a name such as Asia/Shanghai).") from None
        if not 1 <= per_second <= MAX_PER_SECOND:
            raise InvalidCampaign(f"A campaign sends 1 to {MAX_PER_SECOND} messages a second (Telegram allows a bot "
                                  "about 30, shared with its answers).")
        texts = {lang: text.strip() for lang, text in (message or {}).items() if text and text.strip()}
        if kind == CampaignKind.MESSAGE and not texts:
            raise InvalidCampaign("Write the message (English, Chinese or both).")
        if any(len(text) > MAX_MESSAGE for text in texts.values()):
            raise InvalidCampaign(f"A message is at most {MAX_MESSAGE} characters.")
        async with self.uow() as uow:
            campaign = m.Campaign(
                key=f"draft-{utcnow().timestamp()}", name=name, kind=kind, segment_id=segment_id, message=texts,
                channels=[c for c in CHANNELS if c in channels], quiet_start=quiet_start, quiet_end=quiet_end,
                timezone=timezone, per_second=per_second, created_by_agent_id=agent_id,
            )
            if segment_id is not None:
                segment = await uow.session.get(m.Segment, segment_id)
                if segment is None:
                    raise NotFound(f"No segment {segment_id}.")
            else:
                campaign.rules = dump_rule(await checked_rule(uow.session, rules or {}))
            if kind in (CampaignKind.NPS, CampaignKind.CSAT):
                campaign.survey_id = await _survey_id(uow.session, kind, survey_key)
            if kind == CampaignKind.COURSE:
                course = await uow.session.get(m.Course, course_id) if course_id is not None else None
                if course is None or not course.published:
                    raise InvalidCampaign("Choose a published course to invite the customers to.")
                campaign.course_id = course.id
            uow.session.add(campaign)
            try:
                await uow.session.flush()
            except IntegrityError:
                raise ConflictError(f"A campaign is already called {name!r}.") from None
            campaign.key = f"campaign-{campaign.id}"
            await uow.commit()
            return CampaignView.of(campaign)

    async def launch(self, *, campaign_id: int, now: datetime | None = None) -> CampaignView:
        """Start sending: the segment's rules are taken as they are now."""
        async with self.uow() as uow:
            campaign = await _campaign(uow.session, campaign_id, for_update=True)
            if campaign.status != CampaignStatus.DRAFT:
                raise ConflictError(f"The campaign is {campaign.status}, not a draft.")
            segment = await uow.session.get(m.Segment, campaign.segment_id) if campaign.segment_id else None
            if segment is not None:
                campaign.rules = dict(segment.rules)
            elif not campaign.rules:  # its segment was deleted (the key is set to NULL then)
                raise InvalidCampaign("The campaign's segment was deleted: make the campaign again with another.")
            campaign.status = CampaignStatus.RUNNING
            campaign.launched_at = now or utcnow()
            await uow.commit()
            return CampaignView.of(campaign)

    async def pause(self, *, campaign_id: int) -> CampaignView:
        return await self._move(campaign_id, {CampaignStatus.RUNNING}, CampaignStatus.PAUSED)

    async def resume(self, *, campaign_id: int) -> CampaignView:
        return await self._move(campaign_id, {CampaignStatus.PAUSED}, CampaignStatus.RUNNING)

    async def cancel(self, *, campaign_id: int) -> CampaignView:
        return await self._move(campaign_id, {CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED},
                                CampaignStatus.CANCELLED)

    async def _move(self, campaign_id: int, allowed: set[CampaignStatus], to: CampaignStatus) -> CampaignView:
        async with self.uow() as uow:
            campaign = await _campaign(uow.session, campaign_id, for_update=True)
            if campaign.status not in allowed:
                raise ConflictError(f"The campaign is {campaign.status}: it cannot be {to}.")
            campaign.status = to
            await uow.commit()
            return CampaignView.of(campaign)

    async def get(self, *, campaign_id: int) -> CampaignView:
        async with self.uow() as uow:
            return CampaignView.of(await _campaign(uow.session, campaign_id))

    async def list(self) -> builtins.list[CampaignView]:
        async with self.uow() as uow:
            rows = await uow.session.scalars(select(m.Campaign).order_by(m.Campaign.id.desc()))
            return [CampaignView.of(c) for c in rows]

    async def audience(self, *, campaign_id: int, now: datetime | None = None) -> tuple[int, int]:
        """(the segment's members now, those of them who consented to marketing)."""
        async with self.uow() as uow:
            campaign = await _campaign(uow.session, campaign_id)
            rules = campaign.rules
            if campaign.status == CampaignStatus.DRAFT and campaign.segment_id is not None:
                segment = await uow.session.get(m.Segment, campaign.segment_id)
                rules = segment.rules if segment is not None else {}
            if not rules:
                return 0, 0  # its segment was deleted before launch
            members = member_query(parse_rule(rules), now=now or utcnow(), dialect=self.db.dialect)
            total = await uow.session.scalar(select(func.count()).select_from(members.subquery()))
            consenting = await uow.session.scalar(select(func.count()).select_from(
                members.where(m.Customer.marketing_consent.is_(True)).subquery()))
            return int(total or 0), int(consenting or 0)

    async def run_due(self, *, now: datetime | None = None) -> int:
        """The next batch of every running campaign whose second has come (the workers' timers call this every
        second: however many workers, a campaign gets one batch a second); customers handled."""
        now = now or utcnow()
        async with self.uow() as uow:
            running = (await uow.session.scalars(
                select(m.Campaign.id).where(m.Campaign.status == CampaignStatus.RUNNING,
                                            or_(m.Campaign.next_batch_at.is_(None), m.Campaign.next_batch_at <= now))
                .order_by(m.Campaign.id)
            )).all()
        handled = 0
        for campaign_id in running:
            handled += await self.step(campaign_id=campaign_id, now=now, paced=True)
        return handled

    async def step(self, *, campaign_id: int, now: datetime | None = None, limit: int | None = None,
                   paced: bool = False) -> int:
        """The next batch of a running campaign, in one transaction; how many customers it handled (0 in quiet
        hours; `paced`: 0 too when its next batch is not due yet). The campaign finishes when no member is left
        past its cursor."""
        now = now or utcnow()
        async with self.uow() as uow:
            campaign = await _campaign(uow.session, campaign_id, for_update=True)
            if campaign.status != CampaignStatus.RUNNING or _quiet(campaign, now):
                return 0
            if paced and campaign.next_batch_at is not None and campaign.next_batch_at > now:
                return 0  # another worker took this second's batch
            campaign.next_batch_at = now + BATCH_EVERY
            size = min(limit or campaign.per_second, MAX_PER_SECOND)
            members = member_query(parse_rule(campaign.rules), now=now, dialect=self.db.dialect)
            customers = (await uow.session.scalars(
                select(m.Customer).where(m.Customer.id.in_(members), m.Customer.marketing_consent.is_(True),
                                         m.Customer.id > campaign.cursor)
                .order_by(m.Customer.id).limit(size)
            )).all()
            survey = await uow.session.get(m.Survey, campaign.survey_id) if campaign.survey_id else None
            course = await uow.session.get(m.Course, campaign.course_id) if campaign.course_id else None
            for customer in customers:
                uow.session.add(await _reach(uow, campaign, customer, survey, course))
                campaign.cursor = customer.id
            if len(customers) < size:
                campaign.status = CampaignStatus.FINISHED
                campaign.finished_at = now
            try:
                await uow.commit()
            except IntegrityError:
                # Another worker handled this batch in the same moment (SQLite has no row lock): nothing was
                # recorded twice, and the next step starts from its cursor.
                return 0
            return len(customers)

    async def progress(self, *, campaign_id: int) -> CampaignProgress:
        async with self.uow() as uow:
            session = uow.session
            campaign = await _campaign(session, campaign_id)
            recipient = m.CampaignRecipient
            by_status = dict((await session.execute(
                select(recipient.status, func.count()).where(recipient.campaign_id == campaign.id)
                .group_by(recipient.status))).all())
            message = m.Message
            if campaign.survey_id is not None:
                asked = (literal("survey:") + cast(recipient.invitation_id, String)
                         + literal(":ask:%"))
                joined = select(message.delivery_status, func.count(func.distinct(recipient.id))).join(
                    message, message.idempotency_key.like(asked))
            else:
                joined = select(message.delivery_status, func.count(func.distinct(recipient.id))).join(
                    message, message.id == recipient.message_id)
            deliveries = dict((await session.execute(
                joined.where(recipient.campaign_id == campaign.id, recipient.channel == Channel.TELEGRAM)
                .group_by(message.delivery_status))).all())
            in_web_chats = await session.scalar(select(func.count()).where(
                recipient.campaign_id == campaign.id, recipient.status == RecipientStatus.QUEUED,
                recipient.channel == Channel.WEBCHAT))
            answered = await session.scalar(select(func.count()).select_from(recipient).join(
                m.SurveyInvitation, m.SurveyInvitation.id == recipient.invitation_id).where(
                recipient.campaign_id == campaign.id, m.SurveyInvitation.answered_at.is_not(None)))
            return CampaignProgress(
                CampaignView.of(campaign), recipients=sum(by_status.values()),
                queued=by_status.get(RecipientStatus.QUEUED, 0), no_chat=by_status.get(RecipientStatus.NO_CHAT, 0),
                opted_out=by_status.get(RecipientStatus.OPTED_OUT, 0),
                sent=deliveries.get(DeliveryStatus.SENT, 0) + int(in_web_chats or 0),
                failed=deliveries.get(DeliveryStatus.FAILED, 0), answered=int(answered or 0),
            )


async def _reach(uow: UnitOfWork, campaign: m.Campaign, customer: m.Customer, survey: m.Survey | None,
                 course: m.Course | None) -> m.CampaignRecipient:
    """Record what one customer is sent (a survey invitation or a pushed message, announced after the commit)."""
    recipient = m.CampaignRecipient(campaign_id=campaign.id, customer_id=customer.id, status=RecipientStatus.QUEUED)
    identity = await latest_chat(uow.session, customer.id, campaign.channels)
    if identity is None:
        recipient.status = RecipientStatus.NO_CHAT
        return recipient
    recipient.channel = identity.channel
    conversation = await chat_conversation(uow.session, identity)
    if survey is not None:
        try:
            invitation, _ = await invite_in(
                uow, survey=survey, customer=customer, identity=identity, conversation_id=conversation.id,
                dedupe_key=f"{survey.id}:{customer.id}:{campaign.key}", campaign=campaign.key)
        except OptedOut:
            recipient.status = RecipientStatus.OPTED_OUT
            return recipient
        recipient.invitation_id = invitation.id
        return recipient
    text, buttons = _message(campaign, customer, course)
    message = m.Message(
        conversation_id=conversation.id, direction=MessageDirection.OUTGOING, sender=SenderType.BOT, text=text,
        payload={"buttons": buttons, "decision": "flow", "campaign": campaign.key},
        delivery_status=DeliveryStatus.QUEUED, idempotency_key=f"{campaign.key}:{customer.id}",
    )
    uow.session.add(message)
    conversation.last_message_at = utcnow()
    await uow.session.flush()
    recipient.message_id = message.id
    uow.emit(BotPushed(
        conversation_id=conversation.id, message_id=message.id, customer_id=customer.id,
        channel=str(identity.channel), external_id=identity.external_id, text=text, payload=message.payload,
    ))
    return recipient


def _message(campaign: m.Campaign, customer: m.Customer, course: m.Course | None) -> tuple[str, list[dict[str, str]]]:
    """The text in the customer's language (else English, else whichever there is), variables filled; a course
    invitation adds the course's start button (the bot's `co:s:<id>`)."""
    texts = campaign.message or {}
    template = texts.get(customer.language) or texts.get("en") or next(iter(texts.values()), "")
    if course is None:
        return render(template, customer=customer), []
    body = render(template, customer=customer) if template else course.title
    return body, [{"label": f"▶ {course.title}"[:64], "payload": f"co:s:{course.id}"}]


def _quiet(campaign: m.Campaign, now: datetime) -> bool:
    if campaign.quiet_start is None or campaign.quiet_end is None:
        return False
    hour = now.astimezone(ZoneInfo(campaign.timezone)).hour
    start, end = campaign.quiet_start, campaign.quiet_end
    return start <= hour < end if start < end else hour >= start or hour < end


async def _survey_id(session: AsyncSession, kind: CampaignKind, key: str | None) -> int:
    try:
        survey = await get_survey(session, key=key or kind.value, survey_id=None)
    except NotFound:
        survey = None
    if survey is None or survey.kind != SurveyKind(kind.value) or not survey.active:
        raise InvalidCampaign(f"Choose an active {kind.value.upper()} survey.")
    return survey.id


async def _campaign(session: AsyncSession, campaign_id: int, *, for_update: bool = False) -> m.Campaign:
    query = select(m.Campaign).where(m.Campaign.id == campaign_id)
    campaign = (await session.scalars(query.with_for_update() if for_update else query)).first()
    if campaign is None:
        raise NotFound(f"No campaign {campaign_id}.")
    return campaign
