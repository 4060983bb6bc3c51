"""A customer's rights over their data: what is stored (shown in the chat), an export of all of it (JSON, or CSV
files in a zip), and erasure.

Erasure keeps the figures and removes the person. The customer record stays as a husk (no name, e-mail, phone,
tags, shop reference or consent; `erased_at` set) so that counts, KPIs and loyalty totals still add up; their
chats' identities, one-time link codes, stored Telegram updates and their questions proposed as KB phrasings are
deleted; every message of their conversations, their tickets' subjects, notes and context, their survey comments
and the reasons on their points are blanked. Their name, e-mail and phone are also looked for, as text, in every
other customer's messages and tickets and in the knowledge base (an article drafted from their question), replaced
there by "[erased]", and the search index rebuilt from the changed articles. Records merged into the customer are
the same person and are erased with them. The audit log keeps that the erasure happened, by whom, and how many rows
it touched; it never held the personal data itself."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.dto import ErasureReport, PrivacyRequestView, PrivacySummary
from crm_store.enums import Actor, AuditAction, Channel, PrivacyRequestStatus
from crm_store.errors import DomainError, NotFound
from crm_store.events import CustomerErased, KnowledgeBaseChanged
from crm_store.services.audit import audit_in
from crm_store.services.base import Service
from crm_store.services.knowledge import bump_revision

ERASED = "[erased]"
# Columns an export leaves out: secrets' hashes are not the customer's data, and vectors are not readable.
NOT_EXPORTED = {"token_hash", "vectors"}
MIN_NAME_TERM = 5  # a shorter name ("Li", "Ann") is too common to be looked for in other people's texts
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class AlreadyErased(DomainError):
    code = "already_erased"


class MergedRecord(DomainError):
    code = "merged_record"


@dataclass(frozen=True)
class CustomerExport:
    """Every row that concerns one customer, table by table (the records merged into them included)."""

    customer_id: int
    exported_at: datetime
    tables: dict[str, list[dict[str, Any]]]

    def to_json(self) -> bytes:
        document = {"customer_id": self.customer_id, "exported_at": self.exported_at.isoformat(),
                    "tables": self.tables}
        return json.dumps(document, ensure_ascii=False, indent=2, default=_plain).encode("utf-8")

    def to_csv_zip(self) -> bytes:
        """One CSV file per table (a header row even when it is empty), UTF-8 with a BOM so Excel reads Chinese."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for table, rows in self.tables.items():
                text = io.StringIO()
                columns = list(rows[0]) if rows else []
                writer = csv.writer(text)
                writer.writerow(columns)
                for row in rows:
                    writer.writerow([_cell(row[c]) for c in columns])
                archive.writestr(f"{table}.csv", "\ufeff" + text.getvalue())
        return buffer.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return None
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=_plain)
    if isinstance(value, bool | int | float | str):
        return str(value)
    return str(_plain(value))


@dataclass
class _Scope:
    """The rows that belong to one person: ids gathered once, used by the export and the erasure alike."""

    customer_ids: list[int]
    identity_ids: list[int]
    chats: list[tuple[str, str]]
    conversation_ids: list[int]
    ticket_ids: list[int]
    account_ids: list[int]
    invitation_ids: list[int]
    enrollment_ids: list[int]

    def selections(self) -> list[tuple[Table, Any]]:
        """(table, where clause) for every table that holds rows about the person."""
        telegram_chats = [external for channel, external in self.chats if channel == Channel.TELEGRAM]
        t = {name: model.__table__ for name, model in _MODELS.items()}
        return [
            (t["customers"], t["customers"].c.id.in_(self.customer_ids)),
            (t["channel_identities"], t["channel_identities"].c.customer_id.in_(self.customer_ids)),
            (t["conversations"], t["conversations"].c.id.in_(self.conversation_ids)),
            (t["messages"], t["messages"].c.conversation_id.in_(self.conversation_ids)),
            (t["tickets"], t["tickets"].c.id.in_(self.ticket_ids)),
            (t["ticket_events"], t["ticket_events"].c.ticket_id.in_(self.ticket_ids)),
            (t["loyalty_accounts"], t["loyalty_accounts"].c.id.in_(self.account_ids)),
            (t["loyalty_transactions"], t["loyalty_transactions"].c.account_id.in_(self.account_ids)),
            (t["redemptions"], t["redemptions"].c.account_id.in_(self.account_ids)),
            (t["orders"], t["orders"].c.customer_id.in_(self.customer_ids)),
            (t["survey_invitations"], t["survey_invitations"].c.id.in_(self.invitation_ids)),
            (t["survey_answers"], t["survey_answers"].c.invitation_id.in_(self.invitation_ids)),
            (t["enrollments"], t["enrollments"].c.id.in_(self.enrollment_ids)),
            (t["lesson_completions"], t["lesson_completions"].c.enrollment_id.in_(self.enrollment_ids)),
            (t["quiz_answers"], t["quiz_answers"].c.enrollment_id.in_(self.enrollment_ids)),
            (t["campaign_recipients"], t["campaign_recipients"].c.customer_id.in_(self.customer_ids)),
            (t["link_tokens"], t["link_tokens"].c.customer_id.in_(self.customer_ids)),
            (t["customer_merges"], or_(t["customer_merges"].c.source_id.in_(self.customer_ids),
                                       t["customer_merges"].c.target_id.in_(self.customer_ids))),
            (t["privacy_requests"], t["privacy_requests"].c.customer_id.in_(self.customer_ids)),
            (t["kb_phrasing_proposals"], t["kb_phrasing_proposals"].c.conversation_id.in_(self.conversation_ids)),
            (t["inbound_updates"], (t["inbound_updates"].c.channel == Channel.TELEGRAM.value)
             & t["inbound_updates"].c.chat_id.in_(telegram_chats)),
            (t["audit_log"], (t["audit_log"].c.subject_type == "customer")
             & t["audit_log"].c.subject_id.in_([str(i) for i in self.customer_ids])),
        ]


_MODELS: dict[str, Any] = {
    "customers": m.Customer, "channel_identities": m.ChannelIdentity, "conversations": m.Conversation,
    "messages": m.Message, "tickets": m.Ticket, "ticket_events": m.TicketEvent,
    "loyalty_accounts": m.LoyaltyAccount, "loyalty_transactions": m.LoyaltyTransaction,
    "redemptions": m.Redemption, "orders": m.Order, "survey_invitations": m.SurveyInvitation,
    "survey_answers": m.SurveyAnswer, "enrollments": m.Enrollment, "lesson_completions": m.LessonCompletion,
    "quiz_answers": m.QuizAnswer, "campaign_recipients": m.CampaignRecipient, "link_tokens": m.LinkToken,
    "customer_merges": m.CustomerMerge, "privacy_requests": m.PrivacyRequest, "inbound_updates": m.InboundUpdate,
    "kb_phrasing_proposals": m.KbPhrasingProposal,
    "audit_log": m.AuditEntry,
}


async def _ids(session: AsyncSession, column: Any, where: Any) -> list[int]:
    return [int(x) for x in (await session.scalars(select(column).where(where))).all()]


async def _scope(session: AsyncSession, customer_id: int) -> _Scope:
    customer = await session.get(m.Customer, customer_id)
    if customer is None:
        raise NotFound(f"No customer {customer_id}.")
    customer_ids = [customer_id]
    frontier = [customer_id]
    while frontier:  # records merged into this one, and into those (a chain of merges)
        frontier = [i for i in await _ids(session, m.Customer.id, m.Customer.merged_into_id.in_(frontier))
                    if i not in customer_ids]
        customer_ids += frontier
    identities = (await session.execute(
        select(m.ChannelIdentity.id, m.ChannelIdentity.channel, m.ChannelIdentity.external_id)
        .where(m.ChannelIdentity.customer_id.in_(customer_ids)))).all()
    return _Scope(
        customer_ids=customer_ids,
        identity_ids=[row.id for row in identities],
        chats=[(str(row.channel), row.external_id) for row in identities],
        conversation_ids=await _ids(session, m.Conversation.id, m.Conversation.customer_id.in_(customer_ids)),
        ticket_ids=await _ids(session, m.Ticket.id, m.Ticket.customer_id.in_(customer_ids)),
        account_ids=await _ids(session, m.LoyaltyAccount.id, m.LoyaltyAccount.customer_id.in_(customer_ids)),
        invitation_ids=await _ids(session, m.SurveyInvitation.id,
                                  m.SurveyInvitation.customer_id.in_(customer_ids)),
        enrollment_ids=await _ids(session, m.Enrollment.id, m.Enrollment.customer_id.in_(customer_ids)),
    )


def _row(mapping: Any) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if key not in NOT_EXPORTED}


def search_terms(values: Iterable[str | None]) -> list[str]:
    """The strings to look for in other people's texts: e-mails and phones always, names when distinctive."""
    terms: set[str] = set()
    for value in values:
        value = (value or "").strip()
        if not value:
            continue
        contact = "@" in value or sum(c.isdigit() for c in value) >= 7
        if contact or len(value) >= MIN_NAME_TERM or (CJK.search(value) and len(value) >= 2):
            terms.add(value)
    return sorted(terms, key=len, reverse=True)  # the longest first: "Ann Lee Smith" before "Ann Lee"


def scrub(text: str, terms: Sequence[str]) -> str:
    """`text` with every term (case aside) replaced by [erased]."""
    for term in terms:
        text = re.sub(re.escape(term), ERASED, text, flags=re.IGNORECASE)
    return text


class PrivacyService(Service):
    async def summary(self, *, customer_id: int) -> PrivacySummary:
        """What is stored about a customer, for them to see in the chat."""
        async with self.uow() as uow:
            s = uow.session
            scope = await _scope(s, customer_id)
            customer = await s.get(m.Customer, customer_id)
            assert customer is not None

            async def count(model: Any, where: Any) -> int:
                return int(await s.scalar(select(func.count()).select_from(model).where(where)) or 0)

            counts = {
                "conversations": len(scope.conversation_ids),
                "messages": await count(m.Message, m.Message.conversation_id.in_(scope.conversation_ids)),
                "tickets": len(scope.ticket_ids),
                "orders": await count(m.Order, m.Order.customer_id.in_(scope.customer_ids)),
                "survey_answers": await count(m.SurveyAnswer,
                                              m.SurveyAnswer.invitation_id.in_(scope.invitation_ids)),
                "courses": len(scope.enrollment_ids),
            }
            account = (await s.execute(
                select(m.LoyaltyAccount.balance, m.LoyaltyTier.name)
                .outerjoin(m.LoyaltyTier, m.LoyaltyTier.id == m.LoyaltyAccount.tier_id)
                .where(m.LoyaltyAccount.customer_id == customer_id))).first()
            pending = await count(m.PrivacyRequest, (m.PrivacyRequest.customer_id == customer_id)
                                  & (m.PrivacyRequest.status == PrivacyRequestStatus.PENDING))
            audit_in(s, action=AuditAction.DATA_SHOWN, actor=Actor.CUSTOMER, subject_type="customer",
                     subject_id=customer_id)
            await uow.commit()
        return PrivacySummary(
            customer_id=customer_id, name=customer.name, email=customer.email, phone=customer.phone,
            language=customer.language, marketing_consent=customer.marketing_consent,
            channels=tuple(sorted({channel for channel, _ in scope.chats})), counts=counts,
            points=account.balance if account else None, tier=account.name if account else None,
            erasure_pending=pending > 0,
        )

    async def request_erasure(self, *, customer_id: int, channel: Channel | str | None) -> PrivacyRequestView:
        """The customer asks, from the chat, to be erased; an admin carries it out. Asking twice is one request."""
        async with self.uow() as uow:
            s = uow.session
            customer = await s.get(m.Customer, customer_id)
            if customer is None:
                raise NotFound(f"No customer {customer_id}.")
            request = (await s.scalars(select(m.PrivacyRequest).where(
                m.PrivacyRequest.customer_id == customer_id,
                m.PrivacyRequest.status == PrivacyRequestStatus.PENDING))).first()
            if request is None:
                request = m.PrivacyRequest(customer_id=customer_id,
                                           channel=Channel(channel) if channel else None)
                s.add(request)
                await s.flush()
                audit_in(s, action=AuditAction.ERASURE_REQUESTED, actor=Actor.CUSTOMER, subject_type="customer",
                         subject_id=customer_id, details={"request_id": request.id, "channel": str(channel or "")})
            view = _request_view(request, customer.name)
            await uow.commit()
        return view

    async def requests(self, *, status: PrivacyRequestStatus | str | None = PrivacyRequestStatus.PENDING,
                       limit: int = 100) -> list[PrivacyRequestView]:
        """Erasure requests, oldest first (the legal clock runs from the request)."""
        query = (select(m.PrivacyRequest, m.Customer.name)
                 .join(m.Customer, m.Customer.id == m.PrivacyRequest.customer_id)
                 .order_by(m.PrivacyRequest.requested_at, m.PrivacyRequest.id).limit(limit))
        if status:
            query = query.where(m.PrivacyRequest.status == PrivacyRequestStatus(status))
        async with self.uow() as uow:
            rows = (await uow.session.execute(query)).all()
        return [_request_view(request, name) for request, name in rows]

    async def export(self, *, customer_id: int, agent_id: int | None = None, actor: Actor | str = Actor.AGENT,
                     actor_label: str = "", ip: str = "", file_format: str = "json") -> CustomerExport:
        """Every row about the customer, read in one transaction with the audit entry that says it was taken."""
        async with self.uow() as uow:
            s = uow.session
            scope = await _scope(s, customer_id)
            tables = {}
            for table, where in scope.selections():
                key = table.c.id  # every table of a customer's has an integer id
                rows = (await s.execute(select(table).where(where).order_by(key))).mappings().all()
                tables[table.name] = [_row(r) for r in rows]
            audit_in(s, action=AuditAction.CUSTOMER_EXPORTED, actor=actor, agent_id=agent_id,
                     actor_label=actor_label, subject_type="customer", subject_id=customer_id, ip=ip,
                     details={"format": file_format, "rows": sum(len(v) for v in tables.values())})
            await uow.commit()
        return CustomerExport(customer_id=customer_id, exported_at=datetime.now(UTC), tables=tables)

    async def erase(self, *, customer_id: int, agent_id: int | None = None, actor: Actor | str = Actor.AGENT,
                    actor_label: str = "", ip: str = "") -> ErasureReport:
        """Remove the customer's personal data everywhere, in one transaction with its audit entry."""
        async with self.uow() as uow:
            s = uow.session
            customer = await s.get(m.Customer, customer_id, with_for_update=True)
            if customer is None:
                raise NotFound(f"No customer {customer_id}.")
            if customer.merged_into_id is not None:
                raise MergedRecord(f"Customer {customer_id} was merged into customer {customer.merged_into_id}: "
                                   f"erase customer {customer.merged_into_id}, which erases this record too.")
            if customer.erased_at is not None:
                raise AlreadyErased(f"Customer {customer_id} was already erased.")
            scope = await _scope(s, customer_id)
            terms = await _terms(s, scope)
            rows = await _erase_rows(s, scope)
            rows.update(await _scrub_elsewhere(uow, scope, terms))
            entry = audit_in(s, action=AuditAction.CUSTOMER_ERASED, actor=actor, agent_id=agent_id,
                             actor_label=actor_label, subject_type="customer", subject_id=customer_id, ip=ip,
                             details={"customer_ids": scope.customer_ids, "rows": rows})
            await s.flush()
            uow.emit(CustomerErased(customer_ids=scope.customer_ids, conversation_ids=scope.conversation_ids,
                                    chats=scope.chats))
            report = ErasureReport(customer_ids=tuple(scope.customer_ids), rows=rows, audit_entry_id=entry.id)
            await uow.commit()
        forget = getattr(self.events, "forget", None)  # a Redis stream keeps past events (an agent's reply text)
        if forget is not None:
            customers, conversations = set(scope.customer_ids), set(scope.conversation_ids)
            await forget(lambda event: getattr(event, "conversation_id", None) in conversations
                         or getattr(event, "customer_id", None) in customers)
        return report


def _request_view(request: m.PrivacyRequest, name: str) -> PrivacyRequestView:
    return PrivacyRequestView(id=request.id, customer_id=request.customer_id, customer_name=name,
                              channel=str(request.channel) if request.channel else None, status=str(request.status),
                              requested_at=request.requested_at, resolved_at=request.resolved_at)


async def _terms(s: AsyncSession, scope: _Scope) -> list[str]:
    """The person's name, e-mails, phones and chat display names, from every record that is theirs."""
    c = m.Customer
    values: list[str | None] = []
    for row in (await s.execute(select(c.name, c.email, c.phone, c.email_normalized, c.phone_normalized)
                                .where(c.id.in_(scope.customer_ids)))).all():
        values += list(row)
    values += list((await s.scalars(select(m.ChannelIdentity.display_name)
                                    .where(m.ChannelIdentity.id.in_(scope.identity_ids)))).all())
    return search_terms(values)


async def _erase_rows(s: AsyncSession, scope: _Scope) -> dict[str, int]:
    """Blank, anonymise or delete the person's own rows; the number of rows touched, by table."""
    now = datetime.now(UTC)
    selections = {table.name: where for table, where in scope.selections()}

    async def run(statement: Any) -> int:
        return int((await s.execute(statement)).rowcount or 0)  # type: ignore[attr-defined]

    rows = {
        "customers": await run(update(m.Customer).where(selections["customers"]).values(
            name="", email=None, phone=None, email_normalized=None, phone_normalized=None, tags=[],
            external_ref=None, marketing_consent=False, marketing_consent_at=None, erased_at=now)),
        "messages": await run(update(m.Message).where(selections["messages"]).values(
            text=ERASED, payload={})),
        "tickets": await run(update(m.Ticket).where(selections["tickets"]).values(subject=ERASED, context={})),
        "ticket_events": await run(update(m.TicketEvent).where(selections["ticket_events"]).values(
            note="")),  # from/to hold statuses, priorities and agents' ids
        "survey_answers": await run(update(m.SurveyAnswer).where(selections["survey_answers"]).values(
            value_text=None)),
        "survey_invitations": await run(update(m.SurveyInvitation).where(selections["survey_invitations"])
                                        .values(external_id=None)),
        "loyalty_transactions": await run(update(m.LoyaltyTransaction)
                                          .where(selections["loyalty_transactions"]).values(reason="")),
        "privacy_requests": await run(update(m.PrivacyRequest).where(
            selections["privacy_requests"] & (m.PrivacyRequest.status == PrivacyRequestStatus.PENDING)).values(
            status=PrivacyRequestStatus.DONE, resolved_at=now)),
        "inbound_updates": await run(delete(m.InboundUpdate).where(selections["inbound_updates"])),
        "link_tokens": await run(delete(m.LinkToken).where(selections["link_tokens"])),
        # Their questions proposed as KB phrasings: an accepted one lives on in its article (scrubbed below).
        "kb_phrasing_proposals": await run(delete(m.KbPhrasingProposal).where(selections["kb_phrasing_proposals"])),
        "channel_identities": await run(delete(m.ChannelIdentity).where(selections["channel_identities"])),
    }
    return {table: count for table, count in rows.items() if count}


async def _scrub_elsewhere(uow: Any, scope: _Scope, terms: Sequence[str]) -> dict[str, int]:
    """The person named in other customers' messages and tickets, and in the knowledge base: replaced."""
    if not terms:
        return {}
    s: AsyncSession = uow.session
    touched: dict[str, int] = {}
    articles: list[int] = []
    for model, columns in ((m.Message, ("text",)), (m.Ticket, ("subject",)), (m.TicketEvent, ("note",)),
                           (m.SurveyAnswer, ("value_text",)), (m.KbArticle, ("question", "answer"))):
        matches = or_(*(func.lower(getattr(model, col)).contains(term.lower(), autoescape=True)
                        for col in columns for term in terms))
        found = list((await s.scalars(select(model).where(matches))).all())
        if model is m.KbArticle:  # alternative phrasings are a JSON list: read in Python
            found += [a for a in (await s.scalars(select(m.KbArticle))).all()
                      if a not in found and any(t.lower() in q.lower() for q in a.alt_questions or () for t in terms)]
            articles = [a.id for a in found]
        for row in found:
            for col in columns:
                if value := getattr(row, col):
                    setattr(row, col, scrub(value, terms))
            if model is m.KbArticle:
                row.alt_questions = [scrub(q, terms) for q in row.alt_questions or ()]
                row.version += 1  # the old text's vectors go; the next refresh encodes the new text
        if found:
            touched[f"{model.__tablename__} (named elsewhere)"] = len(found)
    if articles:
        await s.flush()
        await s.execute(delete(m.KbArticleVector).where(m.KbArticleVector.article_id.in_(articles)))
        revision = await bump_revision(s)
        uow.emit(KnowledgeBaseChanged(revision=revision, article_ids=articles, action="erased"))
    return touched
