"""The CRM store's front door: every service, built from one database, one event bus and the settings."""

from __future__ import annotations

from crm_store.bus import EventBus
from crm_store.db import Database
from crm_store.services.agents import AgentService
from crm_store.services.app_settings import AppSettingsService
from crm_store.services.assignment import AssignmentService
from crm_store.services.audit import AuditService
from crm_store.services.campaigns import CampaignService
from crm_store.services.canned import CannedResponseService
from crm_store.services.conversations import ConversationService
from crm_store.services.courses import CourseService
from crm_store.services.customers import CustomerService
from crm_store.services.glossary import GlossaryService
from crm_store.services.inbox import InboxService
from crm_store.services.knowledge import KnowledgeService
from crm_store.services.kpis import KpiService
from crm_store.services.loyalty import LoyaltyService
from crm_store.services.orders import OrderService
from crm_store.services.phrasings import PhrasingService
from crm_store.services.privacy import PrivacyService
from crm_store.services.reports import ReportService
from crm_store.services.segments import SegmentService
from crm_store.services.sla import SlaService
from crm_store.services.surveys import SurveyService
from crm_store.services.timeline import TimelineService
from crm_store.services.updates import InboundUpdateService
from crm_store.settings import StoreSettings


class CRM:
    def __init__(self, *, db: Database, events: EventBus, settings: StoreSettings) -> None:
        self.db = db
        self.events = events
        self.settings = settings
        deps = {"db": db, "events": events, "settings": settings}
        self.customers = CustomerService(**deps)
        self.conversations = ConversationService(**deps)
        self.loyalty = LoyaltyService(**deps)
        self.orders = OrderService(**deps)
        self.courses = CourseService(**deps)
        self.agents = AgentService(**deps)
        self.app_settings = AppSettingsService(**deps)  # the console's run-time settings (AppSetting rows)
        self.timeline = TimelineService(**deps)
        self.knowledge = KnowledgeService(**deps)
        self.glossary = GlossaryService(**deps)  # the KB's domain terms and synonyms, edited by admins
        self.phrasings = PhrasingService(**deps)  # customers' questions proposed as articles' phrasings, reviewed
        self.surveys = SurveyService(**deps)
        # the agent console: inbox queries, SLA policy, automatic assignment, canned responses
        self.inbox = InboxService(**deps)
        self.sla = SlaService(**deps)
        self.assignment = AssignmentService(**deps)
        self.canned = CannedResponseService(**deps)
        self.reports = ReportService(**deps)  # the dashboard's KPIs (read-only, aggregate SQL)
        self.kpis = KpiService(**deps)  # the Reports section's KPIs by period (read-only, aggregate SQL)
        self.campaigns = CampaignService(**deps)  # surveys, course invitations and messages sent to a segment
        self.updates = InboundUpdateService(**deps)  # channels' raw updates, stored before they are acknowledged
        self.segments = SegmentService(**deps)  # saved customer segments: rules, live count, member ids
        self.audit = AuditService(**deps)  # the append-only audit log: sign-ins, views, exports, erasures, changes
        self.privacy = PrivacyService(**deps)  # a customer's data: shown, exported, erased; erasure requests

    async def close(self) -> None:
        await self.events.close()
        await self.db.dispose()
