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
        ("When will my order arrive?", "What are your delivery times?", "Do you ship to Canada?", "Is shipping free?",
         "what does delivery cost", "how much is postage", "do you ship internationally?",
         "how long to ship overseas", "whats the minimum order for free shipping",
         "how many days does delivery take within the US", "how soon do you dispatch after I pay",
         "shipping to canada how many days", "do you ship to mainland China?", "standard shipping rate",
         "if I order today how long untill it gets here"),
        "Orders leave our warehouse within 1 business day. Delivery takes **3–5 business days** in the US and "
        "mainland China, **5–8** to Canada and **7–14** elsewhere. Standard shipping is $6 and **free on orders "
        "over $60**; Gold and Platinum members get free shipping on every order.",
        ("orders", "shipping")),
    _en("tracking", "How can I track my order?",
        ("Where is my package?", "Has my order shipped yet?", "Can I get a tracking number?", "track order",
         "order status", "what's the status of order KT-1028",
         "I still haven't recieved my order, can you look it up", "i never got the tracking email",
         "can you check on my order for me", "is my order on its way?", "how do I follow my shipment online",
         "my order number is KT-1044, has it left yet?", "where do I find the tracking link",
         "tracking number pls"),
        "When your order ships we e-mail you a **tracking link**. You can also send me your order number "
        "(for example `KT-1028`) and I'll tell you its status.",
        ("orders", "shipping")),
    _en("returns", "What is your return and refund policy?",
        ("Can I return an item?", "How do I get a refund?", "My order arrived damaged, what can I do?",
         "return policy", "refund", "can I return tea I haven't opened?", "I got the wrong item in my box",
         "the teapot came broken", "how many days do I have to return something",
         "how long until the refund shows up on my card", "what happens to the points from an order I return?",
         "I opened the tea and don't like it, can I still return it?",
         "do I have to mail the damaged cup back?", "you sent me the wrong tea", "I want my money back"),
        "Unopened tea and teaware can be returned within **30 days** of delivery for a full refund. If something "
        "arrives damaged or wrong, send us your order number and a photo and we'll replace or refund it, no need "
        "to send it back. Refunds reach your original payment method within 5–10 business days, and points "
        "earned on a refunded order are taken back.",
        ("orders", "returns")),
    _en("address", "Can I change the delivery address of my order?",
        ("I entered the wrong shipping address", "How do I update my address for an order I already placed?",
         "I moved, can you send my order somewhere else?", "change address",
         "change the shipping adress on my order", "can I edit the delivery address after checkout?",
         "please ship my order to my office instead", "I made a typo in my street name",
         "my order already shipped but the address is wrong", "can you redirect my parcel to a new address",
         "wrong zip code on my order", "update the postcode for order KT-1031",
         "is it too late to change where my order goes?", "can it go to my parents' house instead?",
         "need to fix the apartment number on my order"),
        "Yes, as long as the order hasn't shipped: send us the order number and the new address and an agent "
        "will update it. Once it has shipped we can ask the carrier to redirect the parcel, but we can't "
        "guarantee it.",
        ("orders", "shipping")),
    _en("payment", "Which payment methods do you accept?",
        ("Can I pay with PayPal?", "Do you take credit cards?", "Can I pay with Alipay or WeChat Pay?",
         "payment options", "do you accept Amex?", "is Mastercard accepted", "does checkout support Apple Pay",
         "what currency are your prices in?", "are prices in USD?", "when is my card charged?",
         "do you charge my card right away or when it ships", "visa debit card ok?",
         "do you take cash on delivery?", "can I pay by bank transfer", "which cards can I use at checkout"),
        "We accept **Visa, Mastercard, American Express, PayPal, Apple Pay, Alipay and WeChat Pay**. Prices are "
        "in US dollars, and your card is charged when you place the order.",
        ("orders", "payment")),
    _en("points-earn", "How do I earn loyalty points?",
        ("How many points do I get per dollar?", "Do I get points for my purchases?",
         "When are points added to my account?", "earn points", "how are loyalty points calculated",
         "do I get points on a $45.80 order", "I paid for my order but got no points",
         "why didn't my cancelled order give me any points", "do pending orders earn points?",
         "how many points will a $60 order give me", "is it 1 point per dollar",
         "do cents count towards points", "how fast do points show up after I pay", "ways to collect points",
         "does every purchase earn loyalty points"),
        "You earn **1 point for every $1** you spend, counted in whole dollars. Points are added as soon as an "
        "order is paid; pending, cancelled and refunded orders earn no points.",
        ("loyalty", "points")),
    _en("points-balance", "How can I check my points balance?",
        ("How many points do I have?", "Where can I see my points?", "What's my loyalty tier?", "my points",
         "points balance", "check my points", "what's my current point total",
         "how far am I from the next tier", "which tier am I in right now", "show me my loyalty account",
         "point balance pls", "how many loyalty points are in my acount",
         "how many more points until I level up", "look up my points"),
        "Just ask me \"my points\" here: I'll show your balance, your tier and how many points you need for "
        "the next one. If you chat with us on Telegram, link your account first so I know it's you.",
        ("loyalty", "points")),
    _en("tiers", "What are the membership tiers and their benefits?",
        ("What do I get as a Gold member?", "How do I reach Platinum?",
         "What's the difference between Silver, Gold and Platinum?", "membership levels", "tier benefits",
         "points needed to reach gold status", "what are the perks of Platinum",
         "does redeeming points drop my tier?", "is my tier based on lifetime points or my current balance",
         "VIP program levels", "do Platinum members get gift wrapping?", "how do I move up to Gold",
         "which members get early access to new harvests", "what's the points threshold for each tier",
         "do silver members get anything"),
        "Tiers follow your **lifetime points**: **Silver** from 0, **Gold** from 1,000 and **Platinum** from "
        "5,000. Gold brings free shipping on every order and early access to new harvests; Platinum adds gift "
        "wrapping, a personal tea advisor and invitations to tastings. Redeeming points never lowers your tier.",
        ("loyalty", "tiers")),
    _en("rewards", "How do I redeem my points for rewards?",
        ("What can I get with my points?", "How do I use my points?", "What rewards are available?", "redeem points",
         "rewards catalogue", "how many points is the shipping voucher",
         "can I swap points for the Yixing teacup?", "how many points to redeem the aged Pu'er cake",
         "exchange my points for a gift", "what can 500 points buy",
         "can I book the tasting workshop with points", "are points taken off right away when I redeem",
         "what can I redeem right now", "cash in my points", "Jasmine Pearls sample for points"),
        "Our rewards: a free shipping voucher (200 points), a Jasmine Pearls sample (400), a handmade Yixing "
        "teacup (1,500, while stock lasts), a tea tasting workshop seat (2,500, Gold and up) and a 2008 aged "
        "Pu'er cake (6,000, Platinum only). Ask me \"rewards\" to see what you can redeem now; the points are "
        "deducted straight away.",
        ("loyalty", "rewards")),
    _en("points-expiry", "Do my points expire?",
        ("How long are loyalty points valid?", "Will I lose my points if I don't use them?", "When do points run out?",
         "points expiration", "do points expire after a year", "points expiry date",
         "will you warn me before my points expire", "do expired points affect my tier",
         "my points disappeared, did they expire?", "how long can I keep points before using them",
         "is there a time limit on loyalty points", "do unused points ever get reset",
         "are points good for 24 months?", "can I still use points I earned two years ago"),
        "Points stay valid for **24 months** from the day you earn them, and we remind you a month before any "
        "expire. Expired points leave your balance but still count towards your tier.",
        ("loyalty", "points")),
    _en("telegram", "How do I link my Telegram account?",
        ("How do I connect Telegram to my shop account?", "Can I use the bot on Telegram?",
         "Why doesn't the Telegram bot know my orders?", "link telegram", "/link command",
         "telegram verification code", "I didn't get the code to link Telegram",
         "can I chat with you on telegram", "will my chat history show up in Telegram",
         "the Telegram bot doesn't recognize me", "pair my Telegram with my shop e-mail",
         "is there a Telegram bot for the shop", "where do I enter the one-time code for telegram",
         "see my orders in telegram"),
        "Open our bot in Telegram and send **/link**, then enter the one-time code we send to the e-mail or "
        "phone number on your account. Once linked, your orders, points and chat history are the same in "
        "Telegram and on our website.",
        ("account", "telegram")),
    _en("brew-green", "How do I brew green tea?",
        ("What water temperature for green tea?", "How long should I steep Longjing?",
         "My green tea tastes bitter, what am I doing wrong?", "green tea brewing", "how to make green tea",
         "can I use boiling water for green tea", "how many grams of green tea per cup",
         "how many times can I re-steep Bi Luo Chun", "steeping time for green tea",
         "best way to prepare Dragon Well", "why is my longjing so bitter",
         "how much leaf for 150ml of green tea", "green tea second infusion how long",
         "what temp should the water be for bi luo chun", "brewing instructions for green tea"),
        "Use water at **75–80 °C** (not boiling), about 3 g of leaves per 150 ml, and steep for 1–2 minutes. "
        "Longjing and Bi Luo Chun give 2–3 good infusions: add 30 seconds each time. Bitterness usually means "
        "the water was too hot or the tea steeped too long.",
        ("tea", "brewing")),
    _en("store-tea", "How should I store my tea?",
        ("How long does tea stay fresh?", "Should I keep green tea in the fridge?", "How do I store Pu'er?",
         "tea storage", "best way to keep tea fresh", "does tea go bad", "shelf life of oolong",
         "can I keep tea in a glass jar on the windowsill", "does pu'er get better with age",
         "how long will black tea keep", "my tea smells stale, how should I have stored it",
         "should tea be kept airtight", "can I keep tea in the kitchen next to spices",
         "is it ok to freeze tea"),
        "Keep tea in an airtight, opaque container away from light, heat, moisture and strong smells. Green "
        "tea is best within a year (sealed in the fridge is fine), oolong and black tea keep about two years, "
        "and Pu'er improves with age at stable room temperature with a little air.",
        ("tea", "storage")),
    _en("oolong-caffeine", "How much caffeine is in oolong tea?",
        ("Does Tieguanyin have caffeine?", "Is oolong OK to drink in the evening?", "Oolong vs coffee caffeine",
         "caffeine in oolong", "how much caffeine does Da Hong Pao have",
         "can I have a cup of oolong before bed", "is oolong tea high in caffeine",
         "mg of caffeine in a cup of tieguanyin", "how can I make my oolong less caffeinated",
         "is there as much caffeine in oolong as in coffee", "I'm sensitive to caffeine, can I drink oolong",
         "is oolong too strong for the afternoon", "is oolong caffeine free", "caffiene oolong"),
        "A cup of oolong such as Tieguanyin or Da Hong Pao has about **30–50 mg** of caffeine, roughly half a "
        "cup of coffee. Fewer leaves and shorter steeps give you less, so a light brew suits the afternoon.",
        ("tea", "health")),
    _en("gift-cards", "Do you sell gift cards?",
        ("Can I buy a gift voucher for a friend?", "How do I use a gift card?", "Do gift cards expire?", "gift card",
         "e-gift card amounts", "what values do gift cards come in",
         "can I schedule a gift card for my mom's birthday", "where do I enter my gift card code",
         "is there a $100 gift card", "do you have physical gift cards", "gift ideas for a tea lover",
         "do you sell gift boxes", "can the gift card be emailed to someone else",
         "present for a friend who loves tea"),
        "Yes: digital gift cards from **$25 to $200**, e-mailed on the date you choose. They never expire and "
        "are entered at checkout; for a ready-made present, our Tea sampler gift box is popular too.",
        ("gifts",)),
    _en("human", "How can I talk to a human agent?",
        ("I want to speak to a real person", "Can I talk to customer service?", "Transfer me to an agent", "agent",
         "human please", "talk to someone", "live chat with a person", "I don't want the bot, get me a human",
         "representative", "connect me with customer care", "can a real person help me with this",
         "are you a robot? I want a person", "escalate to staff",
         "will I have to repeat everything to the agent?", "let me speak to a manager"),
        "Type **\"agent\"** and I'll pass the conversation to our Customer Care team, with the chat history so "
        "you won't need to repeat yourself. During opening hours an agent usually replies within minutes.",
        ("support",)),
    _en("hours", "What are your customer service hours?",
        ("When are you open?", "Are your agents available on weekends?", "What time does support close?",
         "opening hours", "support hours", "any support on sundays?",
         "what time do agents start in the morning", "what timezone are your hours in",
         "is customer care available 24/7", "if I message at midnight when will I get a reply",
         "business hours", "are agents online on Saturday", "what hours is live support staffed",
         "office hours in Beijing time?"),
        "I'm here 24/7. Our agents are online **Monday to Saturday, 9:00–21:00 Beijing time (UTC+8)**; "
        "messages sent outside those hours are answered the next working day.",
        ("support",)),
    _en("privacy", "How do you use my personal data, and can I have it deleted?",
        ("Delete my account", "How do I get a copy of my data?", "How do I unsubscribe from marketing e-mails?",
         "privacy policy", "GDPR request", "do you sell my data", "erase everything you have on me",
         "stop sending me promo emails", "close my account", "what do you do with my info",
         "if I delete my account what happens to my points", "who do I email about privacy",
         "how long does an account deletion take", "unsubscribe newsletter",
         "is my personal data shared with third parties"),
        "We use your data only for your orders, loyalty account and support chats, and we never sell it. To get "
        "a copy or have your account deleted, ask an agent or write to privacy@kefu-tea.example; we confirm "
        "within 30 days. Deleting your account also removes your points, and you can unsubscribe from "
        "marketing e-mails at any time.",
        ("account", "privacy")),
)

ZH_ARTICLES: tuple[ArticleInput, ...] = (
    _zh("shipping", "发货后多久能到？运费怎么算？",
        ("什么时候发货？", "包邮吗？", "寄到国外要多久？", "快递几天能到？", "运费", "满多少包邮",
         "亲，下单后多久发货呀", "寄多伦多多长时间能收到", "能寄到美国吗", "邮费咋算的", "付完款啥时候发出",
         "发货时效", "我在上海，大概几天能收到", "不满60美元要付运费吗", "shipping fee怎么算"),
        "订单付款后 1 个工作日内发出。中国大陆和美国一般 **3–5 个工作日**送达，加拿大 5–8 个工作日，其他地区 7–14 个"
        "工作日。运费 6 美元，**满 60 美元包邮**；金卡和白金卡会员所有订单都包邮。",
        ("orders", "shipping")),
    _zh("tracking", "怎么查询订单物流？",
        ("我的快递到哪了？", "订单发货了吗？", "有快递单号吗？", "查物流", "订单状态", "包裹现在在哪",
         "帮我查下订单KT-1028", "怎么看物流进度", "快递单号在哪看", "一直没收到货，帮我查查",
         "物流好几天没更新了", "物流链接在哪里", "没收到物流邮件", "订单到哪一步了", "tracking number在哪"),
        "订单发出后，我们会把**物流跟踪链接**发到您的邮箱。"
        "您也可以直接把订单号（例如 `KT-1028`）发给我，我帮您查订单状态。",
        ("orders", "shipping")),
    _zh("returns", "可以退货退款吗？",
        ("怎么申请退款？", "收到的商品破损了怎么办？", "退换货政策是什么？", "退货", "退款",
         "我上周买的茶叶还没拆封可以退吗", "支持七天无理由退货吗", "拆封了还能退吗", "发错货了",
         "茶杯到手就碎了", "退款多久到账", "退货了积分会扣吗", "坏了的东西要寄回去吗",
         "收到的茶不是我下单的那款", "签收超过30天还能退吗"),
        "未拆封的茶叶和茶具，签收后 **30 天内**可以退货并全额退款。"
        "如果收到的商品有破损或发错了，请把订单号和照片发给我们，"
        "我们直接补发或退款，不用寄回。退款会在 5–10 个工作日内原路退回，该订单获得的积分也会相应扣回。",
        ("orders", "returns")),
    _zh("address", "下单后还能改收货地址吗？",
        ("地址填错了怎么办？", "我要修改订单的收货地址", "能换个地址寄吗？", "改地址", "亲，下单时地址打错字了咋办",
         "门牌号填错了", "收件地址要换一下", "已经发货了还能改地址吗", "我搬家了，订单寄到新地址",
         "能不能寄到我公司", "下单时选错了地址", "快递能转寄吗", "邮编写错了", "帮我把KT-1035的地址改一下",
         "收货地址写成老家了"),
        "订单发货前都可以改：把订单号和新地址发给我们，客服会帮您修改。"
        "已经发货的话，我们可以联系快递尝试转寄，但不能保证成功。",
        ("orders", "shipping")),
    _zh("payment", "支持哪些付款方式？",
        ("可以用支付宝吗？", "能用微信支付吗？", "可以刷信用卡吗？", "付款方式", "支持Apple Pay吗", "能用PayPal付吗",
         "Visa卡能用吗", "可以用人民币付吗", "价格是美元还是人民币", "什么时候扣款", "下单就扣钱吗",
         "支持货到付款吗", "银联卡能付吗", "怎么付钱", "美国运通卡收不收"),
        "我们支持**支付宝、微信支付、Visa、万事达、美国运通、PayPal 和 Apple Pay**。商品以美元标价，下单时即扣款。",
        ("orders", "payment")),
    _zh("points-earn", "购物怎么获得积分？",
        ("消费一美元能得几分？", "积分是怎么算的？", "买东西送积分吗？", "积分规则", "积分咋来的",
         "买100美元的茶能得多少分", "付款后积分多久到账", "为啥我下单了没积分", "取消的订单有积分吗",
         "零头算积分吗", "待付款的订单给积分吗", "积分怎么赚", "每笔订单都有积分吗", "一美元一积分是吗",
         "购物返积分比例是多少"),
        "每消费 **1 美元得 1 积分**，按整数美元计算。订单付款后积分立即到账；待付款、已取消和已退款的订单不计积分。",
        ("loyalty", "points")),
    _zh("points-balance", "怎么查询我的积分余额？",
        ("我有多少积分？", "在哪里看积分？", "我现在是什么会员等级？", "我的积分", "积分余额", "查积分",
         "帮我查下积分", "我现在积分多少", "离下一级还差多少分", "我是金卡吗", "积分查询", "看看我的会员账户",
         "我攒了多少分了", "我的等级是啥", "剩余积分"),
        "直接跟我说“我的积分”就行，我会告诉您当前积分、会员等级，以及离下一等级还差多少分。如果您在 Telegram 上咨询，"
        "请先绑定账号，这样我才能认出您。",
        ("loyalty", "points")),
    _zh("tiers", "会员等级有哪些？各有什么权益？",
        ("金卡会员有什么好处？", "怎么升级成白金卡？", "银卡、金卡、白金卡有什么区别？", "会员等级", "会员权益",
         "多少分能成金卡", "白金会员享受哪些服务", "VIP等级怎么划分", "兑换积分会掉级吗",
         "等级是按累计积分还是剩余积分算", "银卡会员有啥福利", "金卡有新茶抢先购吗", "白金卡有专属顾问吗",
         "会员怎么升级", "5000分是什么等级"),
        "会员等级按**累计积分**计算：**银卡** 0 分起，**金卡** 1000 分，**白金卡** 5000 分。金卡享受所有订单包邮和新茶"
        "抢先购；白金卡另有礼品包装、专属茶艺顾问和品鉴会邀请。兑换积分不会降低您的等级。",
        ("loyalty", "tiers")),
    _zh("rewards", "积分可以兑换什么？",
        ("怎么用积分换礼品？", "积分兑换在哪里？", "有哪些积分礼品？", "积分兑换", "积分商城", "积分能换啥",
         "200积分能换什么", "宜兴茶杯要多少积分", "积分换陈年普洱饼要多少分", "品茶工作坊能用积分换吗",
         "免运费券怎么兑", "兑换后积分什么时候扣", "我现在能换哪些礼品", "用积分换茉莉龙珠", "积分怎么花"),
        "可兑换的礼品有：免运费券（200 积分）、茉莉龙珠试饮装（400）、宜兴手工茶杯（1500，数量有限）、品茶工作坊席位"
        "（2500，金卡及以上）和2008年陈年普洱茶饼（6000，"
        "仅限白金卡）。跟我说“兑换礼品”即可查看您能换的礼品，兑换后积分立即扣除。",
        ("loyalty", "rewards")),
    _zh("points-expiry", "积分会过期吗？",
        ("积分有效期多久？", "积分不用会清零吗？", "积分什么时候失效？", "积分过期", "积分年底清零吗",
         "积分会不会作废", "两年前的积分还能用吗", "积分快过期会提醒吗", "过期的积分影响等级吗",
         "积分能保留多久", "积分会expire吗", "我的积分怎么少了，是过期了吗", "积分能一直留着吗",
         "积分是永久的吗"),
        "积分自获得之日起 **24 个月**内有效，到期前一个月我们会提醒您。"
        "过期的积分会从余额中扣除，但仍计入累计积分，不影响会员等级。",
        ("loyalty", "points")),
    _zh("telegram", "怎么绑定 Telegram 账号？",
        ("Telegram 怎么关联我的会员账号？", "可以在 Telegram 上用机器人吗？", "Telegram 机器人为什么查不到我的订单？",
         "绑定Telegram", "TG怎么绑定账号", "电报怎么绑定", "/link 怎么用", "收不到Telegram绑定验证码",
         "Telegram验证码输在哪", "TG机器人不认识我", "绑定后聊天记录能同步吗", "tg上怎么关联网站账号",
         "网站账号跟Telegram同步", "电报里能查订单吗"),
        "在 Telegram 里打开我们的机器人，发送 **/link**，"
        "再输入我们发到您账户邮箱或手机上的验证码即可。绑定后，订单、积分和"
        "聊天记录在 Telegram 和网站上都能看到。",
        ("account", "telegram")),
    _zh("brew-green", "绿茶怎么泡？",
        ("泡绿茶用多少度的水？", "龙井要泡几分钟？", "绿茶泡出来发苦是怎么回事？", "绿茶冲泡方法", "绿茶能用开水泡吗",
         "碧螺春怎么泡", "泡绿茶放多少茶叶", "龙井能泡几次", "绿茶第二泡要泡多久", "冲绿茶要不要把水晾一晾",
         "绿茶泡了有点涩咋办", "西湖龙井正确泡法", "一杯绿茶放几克", "绿茶闷太久会怎样"),
        "用 **75–80°C** 的水，不要用沸水；150 毫升水放 3 克左右茶叶，"
        "泡 1–2 分钟。龙井、碧螺春可以续泡 2–3 次，每次多泡 "
        "30 秒。如果发苦，多半是水太烫或泡得太久。",
        ("tea", "brewing")),
    _zh("store-tea", "茶叶应该怎么保存？",
        ("茶叶能放多久？", "绿茶要放冰箱吗？", "普洱茶怎么存放？", "茶叶保存", "茶叶怎么储存", "茶叶保质期多久",
         "茶叶怎么防潮", "普洱越放越好吗", "乌龙茶能存几年", "红茶开封后怎么放", "茶叶可以放冷冻吗",
         "茶叶罐要密封吗", "茶叶放厨房会串味吗", "去年的绿茶还能喝吗", "买的茶一次喝不完怎么存"),
        "茶叶要密封、避光，远离高温、潮湿和异味。绿茶最好一年内喝完，密封后放冰箱冷藏也可以；乌龙茶和红茶大约能存两年；"
        "普洱茶在常温、稍微透气的环境下越陈越香。",
        ("tea", "storage")),
    _zh("oolong-caffeine", "乌龙茶的咖啡因含量高吗？",
        ("铁观音有咖啡因吗？", "晚上喝乌龙茶会失眠吗？", "乌龙茶和咖啡哪个咖啡因多？", "乌龙茶咖啡因",
         "大红袍咖啡因多少", "喝铁观音会睡不着吗", "乌龙茶提神吗", "一杯乌龙茶多少毫克咖啡因",
         "对咖啡因敏感能喝乌龙吗", "怎么泡乌龙茶咖啡因少一点", "下午喝铁观音合适吗", "乌龙的咖啡因算多吗",
         "乌龙茶caffeine高吗"),
        "一杯铁观音或大红袍大约含 **30–50 毫克**咖啡因，"
        "约为一杯咖啡的一半。少放茶叶、缩短冲泡时间能减少咖啡因，下午喝可以泡淡一些。",
        ("tea", "health")),
    _zh("gift-cards", "有礼品卡吗？",
        ("可以买购物卡送朋友吗？", "礼品卡怎么用？", "礼品卡有有效期吗？", "礼品卡", "电子礼品卡", "礼品卡面额有哪些",
         "礼品卡能指定日期发吗", "想送朋友茶叶礼物，有推荐吗", "有礼盒吗", "有实体卡吗", "礼品卡卡号在哪输",
         "买张200美元的礼品卡", "有代金券卖吗", "gift card怎么买", "茶叶礼盒"),
        "有的：电子礼品卡面额 **25 至 200 美元**，"
        "可以指定日期发到对方邮箱，永久有效，结账时输入卡号即可使用。想直接送礼的话，"
        "我们的茶叶品鉴礼盒也很受欢迎。",
        ("gifts",)),
    _zh("human", "怎么联系人工客服？",
        ("转人工", "我要找真人客服", "能让客服跟我说吗？", "人工", "人工客服", "找客服", "不想跟机器人聊",
         "你是机器人吗，我要真人", "帮我转接客服", "有活人吗", "叫你们客服出来", "机器人说不清楚，换人",
         "联系客服", "转接人工要重新说一遍吗", "我要投诉，找人工"),
        "发送 **“人工”** 即可，我会把对话连同聊天记录一起转给客服团队，"
        "您不用重复说明。在服务时间内，客服通常几分钟内回复。",
        ("support",)),
    _zh("hours", "客服几点上班？",
        ("你们的营业时间是什么？", "周末有客服吗？", "客服几点下班？", "客服时间", "工作时间", "礼拜天客服上班不",
         "晚上十点还有客服吗", "客服是北京时间吗", "半夜留言什么时候回", "周六上班吗", "客服早上几点上线",
         "机器人24小时在线吗", "服务时间", "人工客服几点到几点"),
        "我 24 小时在线。人工客服的服务时间是**周一至周六 9:00–21:00（北京时间）**；"
        "非服务时间的留言会在下一个工作日回复。",
        ("support",)),
    _zh("privacy", "你们怎么使用我的个人信息？可以注销账号吗？",
        ("我要删除我的个人数据", "怎么注销账户？", "怎么退订营销邮件？", "隐私政策", "注销账号", "你们会卖我的信息吗",
         "个人信息安全吗", "怎么导出我的数据", "别再给我发广告邮件了", "注销后积分还在吗", "删号",
         "取消订阅推广邮件", "隐私问题找谁", "注销要多久", "我的手机号你们拿去干嘛"),
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
