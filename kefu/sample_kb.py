"""The sample shop's knowledge base: the FAQs of "Kefu Tea & Co." in English and Chinese.

The answers follow the sample loyalty programme of kefu.sample_data (1 point per dollar on paid orders; Silver,
Gold and Platinum at 0, 1,000 and 5,000 lifetime points; the rewards catalogue) and the sample chats (Canada in
5–8 business days, free shipping over $60). Each topic has one article per language, with external ids
`shop-en-<topic>` and `shop-zh-<topic>`; the Chinese articles are written for Chinese customers, not translated
word by word.
"""

from __future__ import annotations

from sqlalchemy import select

from crm_store import models as m
from crm_store.crm import CRM
from crm_store.dto import ArticleInput
from crm_store.enums import ArticleStatus


def _en(topic: str, question: str, alt: tuple[str, ...], answer: str, tags: tuple[str, ...]) -> ArticleInput:
    return ArticleInput(question=question, answer=answer, alt_questions=alt, tags=tags, language="en",
                        external_id=f"shop-en-{topic}", status="published")


def _zh(topic: str, question: str, alt: tuple[str, ...], answer: str, tags: tuple[str, ...]) -> ArticleInput:
    return ArticleInput(question=question, answer=answer, alt_questions=alt, tags=tags, language="zh",
                        external_id=f"shop-zh-{topic}", status="published")


EN_ARTICLES: tuple[ArticleInput, ...] = (
    _en("shipping", "How long does shipping take and how much does it cost?",
        ("When will my order arrive?", "What are your delivery times?", "Do you ship to Canada?",
         "Is shipping free?"),
        "Orders leave our warehouse within 1 business day. Delivery takes **3–5 business days** in the US and "
        "mainland China, **5–8** to Canada and **7–14** elsewhere. Standard shipping is $6 and **free on orders "
        "over $60**; Gold and Platinum members get free shipping on every order.",
        ("orders", "shipping")),
    _en("tracking", "How can I track my order?",
        ("Where is my package?", "Has my order shipped yet?", "Can I get a tracking number?"),
        "When your order ships we e-mail you a **tracking link**. You can also send me your order number "
        "(for example `KT-1028`) and I'll tell you its status.",
        ("orders", "shipping")),
    _en("returns", "What is your return and refund policy?",
        ("Can I return an item?", "How do I get a refund?", "My order arrived damaged, what can I do?"),
        "Unopened tea and teaware can be returned within **30 days** of delivery for a full refund. If something "
        "arrives damaged or wrong, send us your order number and a photo and we'll replace or refund it, no need "
        "to send it back. Refunds reach your original payment method within 5–10 business days, and points "
        "earned on a refunded order are taken back.",
        ("orders", "returns")),
    _en("address", "Can I change the delivery address of my order?",
        ("I entered the wrong shipping address", "How do I update my address for an order I already placed?",
         "I moved, can you send my order somewhere else?"),
        "Yes, as long as the order hasn't shipped: send us the order number and the new address and an agent "
        "will update it. Once it has shipped we can ask the carrier to redirect the parcel, but we can't "
        "guarantee it.",
        ("orders", "shipping")),
    _en("payment", "Which payment methods do you accept?",
        ("Can I pay with PayPal?", "Do you take credit cards?", "Can I pay with Alipay or WeChat Pay?"),
        "We accept **Visa, Mastercard, American Express, PayPal, Apple Pay, Alipay and WeChat Pay**. Prices are "
        "in US dollars, and your card is charged when you place the order.",
        ("orders", "payment")),
    _en("points-earn", "How do I earn loyalty points?",
        ("How many points do I get per dollar?", "Do I get points for my purchases?",
         "When are points added to my account?"),
        "You earn **1 point for every $1** you spend, counted in whole dollars. Points are added as soon as an "
        "order is paid; pending, cancelled and refunded orders earn no points.",
        ("loyalty", "points")),
    _en("points-balance", "How can I check my points balance?",
        ("How many points do I have?", "Where can I see my points?", "What's my loyalty tier?"),
        "Just ask me \"my points\" here: I'll show your balance, your tier and how many points you need for "
        "the next one. If you chat with us on Telegram, link your account first so I know it's you.",
        ("loyalty", "points")),
    _en("tiers", "What are the membership tiers and their benefits?",
        ("What do I get as a Gold member?", "How do I reach Platinum?", "What's the difference between Silver, "
         "Gold and Platinum?"),
        "Tiers follow your **lifetime points**: **Silver** from 0, **Gold** from 1,000 and **Platinum** from "
        "5,000. Gold brings free shipping on every order and early access to new harvests; Platinum adds gift "
        "wrapping, a personal tea advisor and invitations to tastings. Redeeming points never lowers your tier.",
        ("loyalty", "tiers")),
    _en("rewards", "How do I redeem my points for rewards?",
        ("What can I get with my points?", "How do I use my points?", "What rewards are available?"),
        "Our rewards: a free shipping voucher (200 points), a Jasmine Pearls sample (400), a handmade Yixing "
        "teacup (1,500, while stock lasts), a tea tasting workshop seat (2,500, Gold and up) and a 2008 aged "
        "Pu'er cake (6,000, Platinum only). Ask me \"rewards\" to see what you can redeem now; the points are "
        "deducted straight away.",
        ("loyalty", "rewards")),
    _en("points-expiry", "Do my points expire?",
        ("How long are loyalty points valid?", "Will I lose my points if I don't use them?",
         "When do points run out?"),
        "Points stay valid for **24 months** from the day you earn them, and we remind you a month before any "
        "expire. Expired points leave your balance but still count towards your tier.",
        ("loyalty", "points")),
    _en("telegram", "How do I link my Telegram account?",
        ("How do I connect Telegram to my shop account?", "Can I use the bot on Telegram?",
         "Why doesn't the Telegram bot know my orders?"),
        "Open our bot in Telegram and send **/link**, then enter the one-time code we send to the e-mail or "
        "phone number on your account. Once linked, your orders, points and chat history are the same in "
        "Telegram and on our website.",
        ("account", "telegram")),
    _en("brew-green", "How do I brew green tea?",
        ("What water temperature for green tea?", "How long should I steep Longjing?",
         "My green tea tastes bitter, what am I doing wrong?"),
        "Use water at **75–80 °C** (not boiling), about 3 g of leaves per 150 ml, and steep for 1–2 minutes. "
        "Longjing and Bi Luo Chun give 2–3 good infusions: add 30 seconds each time. Bitterness usually means "
        "the water was too hot or the tea steeped too long.",
        ("tea", "brewing")),
    _en("store-tea", "How should I store my tea?",
        ("How long does tea stay fresh?", "Should I keep green tea in the fridge?", "How do I store Pu'er?"),
        "Keep tea in an airtight, opaque container away from light, heat, moisture and strong smells. Green "
        "tea is best within a year (sealed in the fridge is fine), oolong and black tea keep about two years, "
        "and Pu'er improves with age at stable room temperature with a little air.",
        ("tea", "storage")),
    _en("oolong-caffeine", "How much caffeine is in oolong tea?",
        ("Does Tieguanyin have caffeine?", "Is oolong OK to drink in the evening?", "Oolong vs coffee caffeine"),
        "A cup of oolong such as Tieguanyin or Da Hong Pao has about **30–50 mg** of caffeine, roughly half a "
        "cup of coffee. Fewer leaves and shorter steeps give you less, so a light brew suits the afternoon.",
        ("tea", "health")),
    _en("gift-cards", "Do you sell gift cards?",
        ("Can I buy a gift voucher for a friend?", "How do I use a gift card?", "Do gift cards expire?"),
        "Yes: digital gift cards from **$25 to $200**, e-mailed on the date you choose. They never expire and "
        "are entered at checkout; for a ready-made present, our Tea sampler gift box is popular too.",
        ("gifts",)),
    _en("human", "How can I talk to a human agent?",
        ("I want to speak to a real person", "Can I talk to customer service?", "Transfer me to an agent"),
        "Type **\"agent\"** and I'll pass the conversation to our Customer Care team, with the chat history so "
        "you won't need to repeat yourself. During opening hours an agent usually replies within minutes.",
        ("support",)),
    _en("hours", "What are your customer service hours?",
        ("When are you open?", "Are your agents available on weekends?", "What time does support close?"),
        "I'm here 24/7. Our agents are online **Monday to Saturday, 9:00–21:00 Beijing time (UTC+8)**; "
        "messages sent outside those hours are answered the next working day.",
        ("support",)),
    _en("privacy", "How do you use my personal data, and can I have it deleted?",
        ("Delete my account", "How do I get a copy of my data?", "How do I unsubscribe from marketing e-mails?"),
        "We use your data only for your orders, loyalty account and support chats, and we never sell it. To get "
        "a copy or have your account deleted, ask an agent or write to privacy@kefu-tea.example; we confirm "
        "within 30 days. Deleting your account also removes your points, and you can unsubscribe from "
        "marketing e-mails at any time.",
        ("account", "privacy")),
)

ZH_ARTICLES: tuple[ArticleInput, ...] = (
    _zh("shipping", "发货后多久能到？运费怎么算？",
        ("什么时候发货？", "包邮吗？", "寄到国外要多久？", "快递几天能到？"),
        "订单付款后 1 个工作日内发出。中国大陆和美国一般 **3–5 个工作日**送达，加拿大 5–8 个工作日，其他地区 7–14 个"
        "工作日。运费 6 美元，**满 60 美元包邮**；金卡和白金卡会员所有订单都包邮。",
        ("orders", "shipping")),
    _zh("tracking", "怎么查询订单物流？",
        ("我的快递到哪了？", "订单发货了吗？", "有快递单号吗？"),
        "订单发出后，我们会把**物流跟踪链接**发到您的邮箱。"
        "您也可以直接把订单号（例如 `KT-1028`）发给我，我帮您查订单状态。",
        ("orders", "shipping")),
    _zh("returns", "可以退货退款吗？",
        ("怎么申请退款？", "收到的商品破损了怎么办？", "退换货政策是什么？"),
        "未拆封的茶叶和茶具，签收后 **30 天内**可以退货并全额退款。"
        "如果收到的商品有破损或发错了，请把订单号和照片发给我们，"
        "我们直接补发或退款，不用寄回。退款会在 5–10 个工作日内原路退回，该订单获得的积分也会相应扣回。",
        ("orders", "returns")),
    _zh("address", "下单后还能改收货地址吗？",
        ("地址填错了怎么办？", "我要修改订单的收货地址", "能换个地址寄吗？"),
        "订单发货前都可以改：把订单号和新地址发给我们，客服会帮您修改。"
        "已经发货的话，我们可以联系快递尝试转寄，但不能保证成功。",
        ("orders", "shipping")),
    _zh("payment", "支持哪些付款方式？",
        ("可以用支付宝吗？", "能用微信支付吗？", "可以刷信用卡吗？"),
        "我们支持**支付宝、微信支付、Visa、万事达、美国运通、PayPal 和 Apple Pay**。商品以美元标价，下单时即扣款。",
        ("orders", "payment")),
    _zh("points-earn", "购物怎么获得积分？",
        ("消费一美元能得几分？", "积分是怎么算的？", "买东西送积分吗？"),
        "每消费 **1 美元得 1 积分**，按整数美元计算。订单付款后积分立即到账；待付款、已取消和已退款的订单不计积分。",
        ("loyalty", "points")),
    _zh("points-balance", "怎么查询我的积分余额？",
        ("我有多少积分？", "在哪里看积分？", "我现在是什么会员等级？"),
        "直接跟我说“我的积分”就行，我会告诉您当前积分、会员等级，以及离下一等级还差多少分。如果您在 Telegram 上咨询，"
        "请先绑定账号，这样我才能认出您。",
        ("loyalty", "points")),
    _zh("tiers", "会员等级有哪些？各有什么权益？",
        ("金卡会员有什么好处？", "怎么升级成白金卡？", "银卡、金卡、白金卡有什么区别？"),
        "会员等级按**累计积分**计算：**银卡** 0 分起，**金卡** 1000 分，**白金卡** 5000 分。金卡享受所有订单包邮和新茶"
        "抢先购；白金卡另有礼品包装、专属茶艺顾问和品鉴会邀请。兑换积分不会降低您的等级。",
        ("loyalty", "tiers")),
    _zh("rewards", "积分可以兑换什么？",
        ("怎么用积分换礼品？", "积分兑换在哪里？", "有哪些积分礼品？"),
        "可兑换的礼品有：免运费券（200 积分）、茉莉龙珠试饮装（400）、宜兴手工茶杯（1500，数量有限）、品茶工作坊席位"
        "（2500，金卡及以上）和2008年陈年普洱茶饼（6000，"
        "仅限白金卡）。跟我说“兑换礼品”即可查看您能换的礼品，兑换后积分立即扣除。",
        ("loyalty", "rewards")),
    _zh("points-expiry", "积分会过期吗？",
        ("积分有效期多久？", "积分不用会清零吗？", "积分什么时候失效？"),
        "积分自获得之日起 **24 个月**内有效，到期前一个月我们会提醒您。"
        "过期的积分会从余额中扣除，但仍计入累计积分，不影响会员等级。",
        ("loyalty", "points")),
    _zh("telegram", "怎么绑定 Telegram 账号？",
        ("Telegram 怎么关联我的会员账号？", "可以在 Telegram 上用机器人吗？", "Telegram 机器人为什么查不到我的订单？"),
        "在 Telegram 里打开我们的机器人，发送 **/link**，"
        "再输入我们发到您账户邮箱或手机上的验证码即可。绑定后，订单、积分和"
        "聊天记录在 Telegram 和网站上都能看到。",
        ("account", "telegram")),
    _zh("brew-green", "绿茶怎么泡？",
        ("泡绿茶用多少度的水？", "龙井要泡几分钟？", "绿茶泡出来发苦是怎么回事？"),
        "用 **75–80°C** 的水，不要用沸水；150 毫升水放 3 克左右茶叶，"
        "泡 1–2 分钟。龙井、碧螺春可以续泡 2–3 次，每次多泡 "
        "30 秒。如果发苦，多半是水太烫或泡得太久。",
        ("tea", "brewing")),
    _zh("store-tea", "茶叶应该怎么保存？",
        ("茶叶能放多久？", "绿茶要放冰箱吗？", "普洱茶怎么存放？"),
        "茶叶要密封、避光，远离高温、潮湿和异味。绿茶最好一年内喝完，密封后放冰箱冷藏也可以；乌龙茶和红茶大约能存两年；"
        "普洱茶在常温、稍微透气的环境下越陈越香。",
        ("tea", "storage")),
    _zh("oolong-caffeine", "乌龙茶的咖啡因含量高吗？",
        ("铁观音有咖啡因吗？", "晚上喝乌龙茶会失眠吗？", "乌龙茶和咖啡哪个咖啡因多？"),
        "一杯铁观音或大红袍大约含 **30–50 毫克**咖啡因，"
        "约为一杯咖啡的一半。少放茶叶、缩短冲泡时间能减少咖啡因，下午喝可以泡淡一些。",
        ("tea", "health")),
    _zh("gift-cards", "有礼品卡吗？",
        ("可以买购物卡送朋友吗？", "礼品卡怎么用？", "礼品卡有有效期吗？"),
        "有的：电子礼品卡面额 **25 至 200 美元**，"
        "可以指定日期发到对方邮箱，永久有效，结账时输入卡号即可使用。想直接送礼的话，"
        "我们的茶叶品鉴礼盒也很受欢迎。",
        ("gifts",)),
    _zh("human", "怎么联系人工客服？",
        ("转人工", "我要找真人客服", "能让客服跟我说吗？"),
        "发送 **“人工”** 即可，我会把对话连同聊天记录一起转给客服团队，"
        "您不用重复说明。在服务时间内，客服通常几分钟内回复。",
        ("support",)),
    _zh("hours", "客服几点上班？",
        ("你们的营业时间是什么？", "周末有客服吗？", "客服几点下班？"),
        "我 24 小时在线。人工客服的服务时间是**周一至周六 9:00–21:00（北京时间）**；"
        "非服务时间的留言会在下一个工作日回复。",
        ("support",)),
    _zh("privacy", "你们怎么使用我的个人信息？可以注销账号吗？",
        ("我要删除我的个人数据", "怎么注销账户？", "怎么退订营销邮件？"),
        "您的信息只用于处理订单、会员积分和客服咨询，我们绝不出售。如需导出数据或注销账号，请联系人工客服或发邮件至 "
        "privacy@kefu-tea.example，我们会在 30 天内确认处理。注销后积分将一并清除；营销邮件可随时退订。",
        ("account", "privacy")),
)

SAMPLE_ARTICLES: tuple[ArticleInput, ...] = EN_ARTICLES + ZH_ARTICLES


async def load_sample_kb(crm: CRM) -> int:
    """Publish the sample FAQs that are not in the knowledge base yet; returns how many articles are published.

    An article already there (by external id) is left as it is, so an agent's edits to a sample article, or its
    unpublishing, survive the next `kefu demo`; a second load changes nothing, not even the KB revision.
    """
    wanted = [a.external_id for a in SAMPLE_ARTICLES if a.external_id]
    async with crm.db.sessionmaker() as session:
        present = set((await session.execute(
            select(m.KbArticle.external_id).where(m.KbArticle.external_id.in_(wanted))
        )).scalars())
    missing = [a for a in SAMPLE_ARTICLES if a.external_id not in present]
    if missing:
        await crm.knowledge.upsert_articles(articles=missing)
    return await crm.knowledge.count(status=ArticleStatus.PUBLISHED)
