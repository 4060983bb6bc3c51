"""The sample shop of `kefu demo`: "Kefu Tea & Co.", a small tea shop with customers, orders, loyalty, chats
and a bilingual FAQ knowledge base (kefu.sample_kb).

Everything goes through the CRM's services, so points and tiers follow the programme's rules. Loading is
idempotent: the demo supervisor is created last, and once it exists the shop counts as loaded. Each step also
skips what is already there, so a load cut short is completed by the next one without duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from crm_store import models as m
from crm_store.crm import CRM
from crm_store.enums import AgentRole, ArticleStatus, Channel, DeliveryStatus, HandoffReason, SenderType, TicketPriority
from kefu.sample_courses import load_sample_courses
from kefu.sample_kb import load_sample_kb

SHOP_NAME = "Kefu Tea & Co."


@dataclass(frozen=True)
class DemoAgent:
    email: str
    name: str
    role: AgentRole
    password: str
    team: str


AGENT = DemoAgent("agent@kefu-tea.example", "Lin Mei", AgentRole.AGENT, "kefu-demo-agent", "Customer Care")
SUPERVISOR = DemoAgent(
    "supervisor@kefu-tea.example", "Zhang Wei", AgentRole.SUPERVISOR, "kefu-demo-super", "Wholesale"
)
ADMIN = DemoAgent("admin@kefu-tea.example", "Chen Jing", AgentRole.ADMIN, "kefu-demo-admin", "Customer Care")
DEMO_AGENTS = (AGENT, SUPERVISOR, ADMIN)

TEAMS = {
    "Customer Care": "Questions, orders and loyalty for everyday customers.",
    "Wholesale": "Tea houses and cafés that buy in bulk.",
}

# (name, threshold, benefits, Chinese name)
TIERS = [
    ("Silver", 0, ["1 point for every $1 spent", "A birthday greeting"], "银卡"),
    ("Gold", 1000, ["Free shipping on every order", "Early access to new harvests"], "金卡"),
    ("Platinum", 5000, ["Free shipping and gift wrapping", "A personal tea advisor", "Invitations to tastings"],
     "白金卡"),
]
# VIP first: these tiers' tickets get at least this priority when the bot hands the chat to a person.
TIER_HANDOFF_PRIORITY = {"Gold": "high", "Platinum": "urgent"}

# (name, Chinese name, cost, stock, description, minimum tier)
REWARDS = [
    ("Free shipping voucher", "免运费券", 200, None, "Free shipping on your next order.", None),
    ("Jasmine Pearls sample (50 g)", "茉莉龙珠试饮装（50克）", 400, None, "A taste of our best-selling jasmine tea.",
     None),
    ("Handmade Yixing teacup", "宜兴手工茶杯", 1500, 10, "Made by hand in Yixing; only ten this season.", None),
    ("Tea tasting workshop seat", "品茶工作坊席位", 2500, None, "An evening of tasting with our tea master.", "Gold"),
    ("2008 aged Pu'er cake", "2008年陈年普洱茶饼", 6000, 3, "From our cellar; three cakes left.", "Platinum"),
]

# sku: (name, price in USD)
PRODUCTS = {
    "LJ-250": ("West Lake Longjing 250 g", Decimal("48.00")),
    "TGY-250": ("Tieguanyin oolong 250 g", Decimal("36.00")),
    "DHP-100": ("Da Hong Pao 100 g", Decimal("58.00")),
    "PUER-357": ("Aged Pu'er cake 357 g", Decimal("88.00")),
    "JAS-100": ("Jasmine Pearls 100 g", Decimal("24.00")),
    "BLC-100": ("Bi Luo Chun 100 g", Decimal("32.00")),
    "GAIWAN": ("Porcelain gaiwan set", Decimal("65.00")),
    "GIFT-BOX": ("Tea sampler gift box", Decimal("78.00")),
}


@dataclass(frozen=True)
class SampleCustomer:
    key: str
    name: str
    email: str
    phone: str | None
    language: str
    tags: tuple[str, ...]
    consent: bool


CUSTOMERS = [
    SampleCustomer("wang", "王小明", "wang.xiaoming@example.cn", "+86 138 0013 8000", "zh", ("vip", "wholesale"), True),
    SampleCustomer("lina", "李娜", "li.na@example.cn", "+86 139 1234 5678", "zh", ("green-tea",), True),
    SampleCustomer("emily", "Emily Carter", "emily.carter@example.com", "+1 415 555 0132", "en", ("gift-buyer",),
                   True),
    SampleCustomer("chen", "陈静", "chen.jing@example.cn", "+86 137 2468 1357", "zh", ("cafe", "wholesale"), True),
    SampleCustomer("james", "James O'Brien", "james.obrien@example.com", "+1 212 555 0187", "en", (), False),
    SampleCustomer("sofia", "Sofia Martinez", "sofia.martinez@example.com", "+1 305 555 0164", "en",
                   ("subscription",), True),
    SampleCustomer("liu", "刘洋", "liu.yang@example.cn", "+86 135 0101 2020", "zh", (), False),
    SampleCustomer("oliver", "Oliver Smith", "oliver.smith@example.com", None, "en", ("new",), False),
    SampleCustomer("zhao", "赵敏", "zhao.min@example.cn", "+86 186 6688 9900", "zh", ("pu-erh",), True),
    SampleCustomer("hannah", "Hannah Lee", "hannah.lee@example.com", "+1 646 555 0119", "en", ("gift-buyer",), True),
    SampleCustomer("zhou", "周杰", "zhou.jie@example.cn", "+86 158 2222 3333", "zh", ("oolong",), False),
    SampleCustomer("grace", "Grace Kim", "grace.kim@example.com", "+1 206 555 0145", "en", ("green-tea",), False),
]

# (reference, customer key, days ago, status, [(sku, quantity), ...]); paid, shipped and completed orders earn
# a point per dollar: 王小明 reaches Platinum, 李娜, Emily Carter and 陈静 reach Gold.
ORDERS = [
    ("KT-1001", "wang", 170, "completed", [("PUER-357", 20)]),
    ("KT-1002", "lina", 160, "completed", [("LJ-250", 5)]),
    ("KT-1003", "emily", 155, "completed", [("GIFT-BOX", 6)]),
    ("KT-1004", "james", 150, "completed", [("JAS-100", 2)]),
    ("KT-1005", "wang", 140, "completed", [("LJ-250", 20)]),
    ("KT-1006", "chen", 135, "completed", [("TGY-250", 10)]),
    ("KT-1007", "sofia", 130, "completed", [("LJ-250", 1)]),
    ("KT-1008", "lina", 120, "completed", [("BLC-100", 6)]),
    ("KT-1009", "zhao", 115, "completed", [("PUER-357", 2)]),
    ("KT-1010", "wang", 110, "completed", [("DHP-100", 15)]),
    ("KT-1011", "sofia", 100, "completed", [("LJ-250", 1)]),
    ("KT-1012", "hannah", 95, "completed", [("GIFT-BOX", 2)]),
    ("KT-1013", "emily", 90, "completed", [("GIFT-BOX", 4), ("JAS-100", 5)]),
    ("KT-1014", "chen", 85, "completed", [("LJ-250", 8)]),
    ("KT-1015", "james", 80, "refunded", [("DHP-100", 1)]),
    ("KT-1016", "wang", 75, "completed", [("TGY-250", 25)]),
    ("KT-1017", "liu", 70, "completed", [("TGY-250", 2)]),
    ("KT-1018", "lina", 65, "completed", [("GAIWAN", 2), ("JAS-100", 4)]),
    ("KT-1019", "sofia", 60, "completed", [("LJ-250", 1)]),
    ("KT-1020", "zhou", 55, "completed", [("BLC-100", 3)]),
    ("KT-1021", "hannah", 50, "cancelled", [("GAIWAN", 1)]),
    ("KT-1022", "wang", 45, "completed", [("GIFT-BOX", 10)]),
    ("KT-1023", "emily", 40, "completed", [("GAIWAN", 2), ("LJ-250", 3)]),
    ("KT-1024", "lina", 30, "completed", [("PUER-357", 4)]),
    ("KT-1025", "zhao", 25, "completed", [("PUER-357", 1)]),
    ("KT-1026", "grace", 20, "completed", [("LJ-250", 1), ("BLC-100", 1)]),
    ("KT-1027", "chen", 12, "shipped", [("BLC-100", 10)]),
    ("KT-1028", "wang", 8, "shipped", [("PUER-357", 10)]),
    ("KT-1029", "oliver", 3, "paid", [("GIFT-BOX", 1)]),
    ("KT-1030", "chen", 1, "pending", [("JAS-100", 10)]),
]


@dataclass(frozen=True)
class SampleSummary:
    """What the CRM holds after loading; `created` is False when the shop had been loaded before."""

    customers: int
    orders: int
    tiers: int
    rewards: int
    teams: int
    agents: int
    conversations: int
    articles: int  # published knowledge-base articles, English and Chinese
    courses: int  # published training courses
    created: bool
    demo_agents: tuple[DemoAgent, ...] = DEMO_AGENTS


async def load_sample_shop(crm: CRM) -> SampleSummary:
    """Load the sample shop once; a second call adds nothing and returns the counts."""
    await load_sample_courses(crm)  # skips those already there, so a shop loaded before courses gets them now
    if await _is_loaded(crm):
        await load_sample_kb(crm)  # a shop loaded before it had a knowledge base gets its FAQs now
        await _agent(crm, ADMIN, {t.name: t.id for t in await crm.agents.list_teams()})  # ...and its admin
        return await _summary(crm, created=False)
    tiers = await _tiers(crm)
    await _rewards(crm, tiers)
    teams = {name: await crm.agents.create_team(name=name, description=text) for name, text in TEAMS.items()}
    customers = await _customers(crm)
    await _orders(crm, customers)
    agent_id = await _agent(crm, AGENT, teams)
    await _conversations(crm, customers, agent_id)
    await load_sample_kb(crm)
    await _agent(crm, ADMIN, teams)
    await _agent(crm, SUPERVISOR, teams)  # last: its existence marks the shop as loaded
    return await _summary(crm, created=True)


async def _is_loaded(crm: CRM) -> bool:
    return any(a.email == SUPERVISOR.email for a in await crm.agents.list_agents())


async def _tiers(crm: CRM) -> dict[str, int]:
    existing = {t.name: t.id for t in await crm.loyalty.tiers()}
    for name, threshold, benefits, zh in TIERS:
        if name not in existing:
            tier = await crm.loyalty.define_tier(name=name, threshold=threshold, benefits=benefits, names={"zh": zh},
                                                 handoff_priority=TIER_HANDOFF_PRIORITY.get(name))
            existing[name] = tier.id
    return existing


async def _rewards(crm: CRM, tiers: dict[str, int]) -> None:
    async with crm.db.sessionmaker() as session:
        existing = set((await session.execute(select(m.Reward.name))).scalars())
    for name, zh, cost, stock, description, min_tier in REWARDS:
        if name not in existing:
            await crm.loyalty.create_reward(
                name=name, names={"zh": zh}, cost=cost, stock=stock, description=description,
                min_tier_id=tiers[min_tier] if min_tier else None,
            )


async def _customers(crm: CRM) -> dict[str, int]:
    ids: dict[str, int] = {}
    for c in CUSTOMERS:
        found = await crm.customers.find_by_contact(email=c.email)
        if found is None:
            found = await crm.customers.create(
                name=c.name, email=c.email, phone=c.phone, language=c.language, tags=list(c.tags),
                marketing_consent=c.consent,
            )
        ids[c.key] = found.id
    return ids


async def _orders(crm: CRM, customers: dict[str, int]) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for n, (ref, key, days_ago, status, lines) in enumerate(ORDERS):
        items = [
            {"sku": sku, "name": PRODUCTS[sku][0], "quantity": qty, "unit_price": str(PRODUCTS[sku][1])}
            for sku, qty in lines
        ]
        amount = sum((PRODUCTS[sku][1] * qty for sku, qty in lines), Decimal("0"))
        # record_order is idempotent by reference: an order already there earns nothing twice.
        await crm.orders.record_order(
            customer_id=customers[key], external_ref=ref, amount=amount, currency="USD",
            placed_at=now - timedelta(days=days_ago, hours=n * 5 % 11), status=status, items=items,
        )


async def _agent(crm: CRM, demo: DemoAgent, teams: dict[str, int]) -> int:
    for agent in await crm.agents.list_agents():
        if agent.email == demo.email:
            return agent.id
    created = await crm.agents.create_agent(
        email=demo.email, name=demo.name, password=demo.password, role=demo.role, team_id=teams[demo.team]
    )
    return created.id


async def _conversations(crm: CRM, customers: dict[str, int], agent_id: int) -> None:
    """Four chats: two answered by the bot, one handed off and open with an agent, one handed off and resolved."""
    summary = await crm.loyalty.summary(customer_id=customers["lina"])
    tier = summary.tier.names.get("zh", summary.tier.name) if summary.tier else "会员"

    async def chat(key: str, channel: Channel, external_id: str, name: str, turns: list[tuple[str, str]]) -> int:
        await crm.customers.link_identity(channel=channel, external_id=external_id, customer_id=customers[key])
        conversation_id = 0
        for n, (sender, text) in enumerate(turns, start=1):
            if sender == "customer":
                recorded = await crm.conversations.record_incoming(
                    channel=channel, external_id=external_id, text=text, channel_message_id=f"sample-{n}",
                    display_name=name,
                )
                conversation_id = recorded.conversation.id
            else:
                await crm.conversations.record_outgoing(
                    conversation_id=conversation_id, sender=SenderType(sender), text=text,
                    agent_id=agent_id if sender == "agent" else None, delivery_status=DeliveryStatus.DELIVERED,
                    idempotency_key=f"sample:{channel}:{external_id}:{n}",
                )
        return conversation_id

    async def is_new(key: str, channel: Channel) -> bool:
        return not any(i.channel == channel for i in await crm.customers.identities(customer_id=customers[key]))

    if await is_new("lina", Channel.TELEGRAM):
        await chat("lina", Channel.TELEGRAM, "500100201", "李娜", [
            ("customer", "你好，我的积分还有多少？"),
            ("bot", f"您好，李娜！您目前有 {summary.balance} 积分，会员等级：{tier}。"),
            ("customer", "谢谢！"),
            ("bot", "不客气，祝您品茶愉快！🍵"),
        ])
    if await is_new("wang", Channel.TELEGRAM):
        conversation_id = await chat("wang", Channel.TELEGRAM, "500100202", "王小明", [
            ("customer", "我的订单 KT-1028 什么时候到？"),
            ("bot", "订单 KT-1028 已发货，预计 3–5 个工作日送达。"),
            ("customer", "我需要改一下收货地址，请帮我转人工客服。"),
        ])
        ticket = await crm.conversations.hand_off(
            conversation_id=conversation_id, reason=HandoffReason.CUSTOMER_ASKED,
            subject="Change the delivery address of KT-1028", category="orders", priority=TicketPriority.HIGH,
        )
        await crm.conversations.assign(ticket_id=ticket.id, agent_id=agent_id)
        await crm.conversations.record_outgoing(
            conversation_id=conversation_id, sender=SenderType.AGENT, agent_id=agent_id,
            text="王先生您好，我是客服林梅。请把新的收货地址发给我，我马上联系快递。",
            delivery_status=DeliveryStatus.DELIVERED, idempotency_key="sample:telegram:500100202:agent",
        )
    if await is_new("emily", Channel.WEBCHAT):
        conversation_id = await chat("emily", Channel.WEBCHAT, "web-7f3a9c", "Emily", [
            ("customer", "Hi! Do you ship to Canada?"),
            ("bot", "Yes, we ship to Canada: 5–8 business days, free over $60."),
            ("customer", "My last gift box arrived with a broken lid. Can someone help?"),
        ])
        ticket = await crm.conversations.hand_off(
            conversation_id=conversation_id, reason=HandoffReason.COMPLAINT, subject="Gift box arrived damaged",
            category="complaints",
        )
        await crm.conversations.assign(ticket_id=ticket.id, agent_id=agent_id)
        await crm.conversations.record_outgoing(
            conversation_id=conversation_id, sender=SenderType.AGENT, agent_id=agent_id,
            text="I'm sorry about that, Emily. A replacement gift box is on its way today, no need to return it.",
            delivery_status=DeliveryStatus.DELIVERED, idempotency_key="sample:webchat:web-7f3a9c:agent",
        )
        await crm.conversations.resolve(ticket_id=ticket.id, by_agent_id=agent_id)
    if await is_new("oliver", Channel.WEBCHAT):
        await chat("oliver", Channel.WEBCHAT, "web-2b81d4", "Oliver", [
            ("customer", "What's the difference between Longjing and Bi Luo Chun?"),
            ("bot", "Both are green teas: Longjing is pan-fired and nutty; Bi Luo Chun is tightly rolled and fruity."),
        ])


async def _summary(crm: CRM, *, created: bool) -> SampleSummary:
    async with crm.db.sessionmaker() as session:

        async def count(model: type[m.Base], *where: object) -> int:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        return SampleSummary(
            customers=await count(m.Customer, m.Customer.merged_into_id.is_(None)),
            orders=await count(m.Order),
            tiers=await count(m.LoyaltyTier),
            rewards=await count(m.Reward),
            teams=await count(m.Team),
            agents=await count(m.Agent),
            conversations=await count(m.Conversation),
            articles=await count(m.KbArticle, m.KbArticle.status == ArticleStatus.PUBLISHED),
            courses=await count(m.Course, m.Course.published.is_(True)),
            created=created,
        )
