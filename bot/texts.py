"""Every customer-facing text of the bot, in English and Chinese."""

from __future__ import annotations

import re

from knowledge_base.lang import detect_language

LANGUAGES = ("en", "zh")

TEXTS: dict[str, dict[str, str]] = {
    "welcome": {
        "en": "Hello{name}! I'm the Kefu Tea & Co. assistant. Ask me anything about orders, delivery, returns or "
              "tea, check your loyalty points, or type /human to talk to a person.",
        "zh": "您好{name}！我是 Kefu Tea & Co. 的智能客服。您可以问我订单、配送、退换货和茶叶的问题，查询会员积分，"
              "或输入 /human 联系人工客服。",
    },
    "help": {
        "en": "You can ask me a question in your own words, or ask about your points.\n/courses: product courses\n"
              "/link CODE: link this chat to your membership\n/human: talk to a person\n"
              "/language: 中文 / English\n/privacy: what we store about you\n/stop: no more surveys or offers",
        "zh": "直接用您自己的话提问就可以，也可以查询积分。\n/courses：产品课程\n"
              "/link 关联码：将本对话关联到您的会员账户\n/human：联系人工客服\n/language：English / 中文\n"
              "/privacy：查看我们保存的您的信息\n/stop：不再接收问卷和推广",
    },
    "greet": {"en": "Hello! How can I help you today?", "zh": "您好！请问有什么可以帮您？"},
    "thanks": {"en": "You're welcome! Anything else I can do for you?", "zh": "不客气！还有什么可以帮您的吗？"},
    "goodbye": {"en": "Goodbye, and enjoy your tea!", "zh": "再见，祝您品茶愉快！"},
    "affirm": {"en": "Great! What else can I help with?", "zh": "好的！还有什么可以帮您？"},
    "deny": {"en": "All right. Just ask whenever you need me.", "zh": "好的，有需要随时找我。"},
    "answer_source": {"en": "Source: {question}", "zh": "来源：{question}"},
    "helpful": {"en": "Was this helpful?", "zh": "这个回答有帮助吗？"},
    "yes": {"en": "👍 Yes", "zh": "👍 有帮助"},
    "no": {"en": "👎 No", "zh": "👎 没帮助"},
    "feedback_thanks": {"en": "Thanks for telling me!", "zh": "感谢您的反馈！"},
    "feedback_sorry": {
        "en": "Sorry about that. Would you like to talk to a person?",
        "zh": "抱歉没能帮到您。需要转人工客服吗？",
    },
    "suggest": {"en": "I'm not sure I understood. Did you mean:", "zh": "我不太确定您的意思，您是想问："},
    "none_of_these": {"en": "None of these", "zh": "都不是"},
    "no_answer": {
        "en": "Sorry, I don't have an answer to that. Would you like to talk to a person?",
        "zh": "抱歉，这个问题我暂时无法回答。需要为您转接人工客服吗？",
    },
    "talk_to_human": {"en": "Talk to a person", "zh": "转人工客服"},
    "no_thanks": {"en": "No, thanks", "zh": "不用了"},
    "rephrase": {"en": "OK. Try asking in other words and I'll look again.", "zh": "好的，您可以换个说法再问我一次。"},
    "handoff": {
        "en": "I've passed your conversation to our team (ticket #{ticket}). A person will reply here as soon as "
              "possible{wait}; you don't need to do anything else.",
        "zh": "已为您转接人工客服（工单 #{ticket}）。客服人员会尽快在这里回复您{wait}，您无需其他操作。",
    },
    "handoff_wait": {"en": ", usually within {minutes} minutes", "zh": "，通常在 {minutes} 分钟内"},
    "complaint": {
        "en": "I'm sorry to hear that. ",
        "zh": "非常抱歉给您带来不好的体验。",
    },
    "out_of_scope": {
        "en": "I can only help with Kefu Tea & Co. orders, delivery, loyalty and tea. Is there something about "
              "those I can do for you?",
        "zh": "我只能解答 Kefu Tea & Co. 的订单、配送、会员和茶叶相关问题。有这方面的问题吗？",
    },
    "choose_language": {"en": "Which language would you like?", "zh": "请选择语言："},
    "slow_down": {
        "en": "⏳ You're sending messages very fast; I'll answer again in a few seconds.",
        "zh": "⏳ 您发送得太快了，请稍等几秒再发。",
    },
    "language_set": {"en": "I'll speak English from now on.", "zh": "好的，接下来我会用中文和您交流。"},
    "language_guess": {
        "en": "English it is. If you write to me in Chinese, I'll answer in Chinese; /language sets one for good.",
        "zh": "好的，我们用中文交流。如果您用英文提问，我会用英文回复；如需固定一种语言，请发送 /language。",
    },
    "stopped": {
        "en": "Done: you won't receive surveys or offers any more. You can still ask me anything.",
        "zh": "已为您退订：您将不再收到问卷和推广消息。您仍然可以随时向我提问。",
    },
    "not_yet": {
        "en": "I can't do that here yet. Would you like to talk to a person?",
        "zh": "这个功能暂时还不能在这里办理。需要转人工客服吗？",
    },
    "link_ask_telegram": {
        "en": "To show your points I first need to know who you are. Tap the button below to share your phone "
              "number; I'll match it with your membership. If our team gave you a link code, type /link CODE "
              "instead.",
        "zh": "查询积分前需要先确认您的会员身份。请点击下方按钮分享您的手机号，我会为您匹配会员账户。"
              "如果客服给了您关联码，也可以直接输入 /link 关联码。",
    },
    "link_ask_webchat": {
        "en": "To show your points I first need to link this chat to your membership. Type /link CODE with the "
              "link code our team gave you (ask them for one if you have none), or talk to a person now.",
        "zh": "查询积分前需要先将本对话与您的会员账户关联。请输入 /link 关联码（关联码可向客服索取），"
              "或现在转人工客服。",
    },
    "share_phone": {"en": "📱 Share my phone number", "zh": "📱 分享我的手机号"},
    "link_own_contact": {
        "en": "Please share your own contact with the button, not someone else's.",
        "zh": "请通过按钮分享您本人的联系方式，而不是他人的。",
    },
    "link_not_found": {
        "en": "I couldn't find a membership with this phone number. A person can help you link your account.",
        "zh": "没有找到使用该手机号的会员账户。人工客服可以帮您关联账户。",
    },
    "linked": {"en": "Thanks {name}, your chat is now linked to your membership.",
               "zh": "{name}，感谢！本对话已与您的会员账户关联。"},
    "already_linked": {"en": "This chat is linked to the membership of {name}.", "zh": "本对话已关联会员：{name}。"},
    "balance": {"en": "You have {points} points.", "zh": "您目前有 {points} 积分。"},
    "tier_line": {"en": "Your tier: {tier}.", "zh": "会员等级：{tier}。"},
    "next_tier": {"en": "{points} more points to reach {tier}.", "zh": "再获得 {points} 积分即可升级为{tier}。"},
    "top_tier": {"en": "You're at our highest tier. Thank you!", "zh": "您已是最高等级会员，感谢您的支持！"},
    "history_header": {"en": "Your latest points:", "zh": "最近的积分记录："},
    "history_empty": {"en": "No points activity yet.", "zh": "暂无积分记录。"},
    "catalogue_header": {"en": "Rewards (you have {points} points):", "zh": "可兑换的礼品（您有 {points} 积分）："},
    "no_rewards": {"en": "There are no rewards to redeem right now.", "zh": "目前没有可兑换的礼品。"},
    "confirm_redeem": {"en": "Redeem {reward} for {cost} points?", "zh": "确认用 {cost} 积分兑换{reward}吗？"},
    "confirm": {"en": "✅ Confirm", "zh": "✅ 确认兑换"},
    "cancel": {"en": "Cancel", "zh": "取消"},
    "cancelled": {"en": "OK, nothing was redeemed.", "zh": "好的，未进行兑换。"},
    "redeemed": {"en": "Done! {points} points redeemed; your balance is now {balance}.",
                 "zh": "兑换成功！已使用 {points} 积分，当前余额 {balance}。"},
    "already_redeemed": {"en": "That one is already redeemed; your balance is {balance}.",
                         "zh": "该兑换已完成，当前余额 {balance}。"},
    "insufficient": {"en": "Sorry, you don't have enough points for that reward yet.",
                     "zh": "抱歉，您的积分暂时不足以兑换该礼品。"},
    "reward_unknown": {"en": "Sorry, that reward isn't available.", "zh": "抱歉，该礼品暂不可兑换。"},
    "unavailable": {
        "en": "Sorry, I'm having trouble right now. Please try again in a moment.",
        "zh": "抱歉，系统暂时出了点问题，请稍后再试。",
    },
    # --- the web chat's refusals (shown by the widget as they are: English / Chinese) ------------------------
    "webchat_too_fast": {"en": "You're sending messages too fast. Please wait {seconds} s and try again.",
                         "zh": "您发送消息太快了，请等待 {seconds} 秒后再试。"},
    "webchat_too_long": {"en": "Your message is too long: at most {limit} characters.",
                         "zh": "消息太长了：最多 {limit} 个字符。"},
    "webchat_empty": {"en": "Type a message first.", "zh": "请先输入消息。"},
    "webchat_invalid": {"en": "This message could not be sent ({problem}). Please reload the page and try again.",
                        "zh": "消息无法发送，请刷新页面后重试。"},
    "webchat_too_large": {"en": "This request is too large (at most {kb} KB).", "zh": "请求内容过大（最多 {kb} KB）。"},
    "unsupported": {
        "en": "I can only read text messages. Please type your question.",
        "zh": "我目前只能识别文字消息，请直接输入您的问题。",
    },
    # --- linking (one-time tokens) -------------------------------------------------------------------------
    "link_code_missing": {
        "en": "Please type the link code after /link, like this: /link CODE. Our team can give you one, or you "
              "can talk to a person now.",
        "zh": "请在 /link 后面输入关联码，例如：/link 关联码。关联码可向客服索取，您也可以现在转人工客服。",
    },
    "link_code_unknown": {
        "en": "Sorry, I don't recognize that link code. Please check it and try again, or talk to a person.",
        "zh": "抱歉，无法识别该关联码。请检查后重试，或转人工客服。",
    },
    "link_code_used": {
        "en": "That link code has already been used: each code works only once. Ask our team for a new one, or "
              "talk to a person.",
        "zh": "该关联码已被使用，每个关联码只能使用一次。请向客服索取新的关联码，或转人工客服。",
    },
    "link_code_expired": {
        "en": "That link code has expired. Ask our team for a new one, or talk to a person.",
        "zh": "该关联码已过期。请向客服索取新的关联码，或转人工客服。",
    },
    "link_code_conflict": {
        "en": "This chat is already linked to another membership, so I can't use that code here. A person can "
              "help you sort it out.",
        "zh": "本对话已关联其他会员账户，无法在这里使用该关联码。人工客服可以帮您处理。",
    },
    # --- surveys -------------------------------------------------------------------------------------------
    "survey_intro_csat": {
        "en": "Your request has been resolved. Could you tell us how we did? It takes a few seconds.",
        "zh": "您的问题已处理完毕。能花几秒钟评价一下我们的服务吗？",
    },
    "survey_intro_nps": {"en": "A quick question from Kefu Tea & Co.:", "zh": "Kefu Tea & Co. 想请您回答一个小问题："},
    "survey_skip": {"en": "Skip", "zh": "跳过"},
    "survey_thanks": {"en": "Thank you for your feedback! 🙏", "zh": "感谢您的反馈！🙏"},
    "survey_already": {"en": "You've already answered that one, thank you!", "zh": "您已经回答过这个问题了，谢谢！"},
    "survey_invalid": {"en": "Sorry, I didn't get that answer.", "zh": "抱歉，没有识别到您的回答。"},
    "survey_expired": {"en": "Sorry, this survey has closed.", "zh": "抱歉，该问卷已结束。"},
    "survey_unknown": {"en": "Sorry, that survey isn't available.", "zh": "抱歉，该问卷不可用。"},
    # --- courses -------------------------------------------------------------------------------------------
    "course_catalogue": {"en": "📚 Our tea courses:", "zh": "📚 我们的茶课程："},
    "course_nothing_to_continue": {"en": "You have no course in progress. Pick one to start:",
                                   "zh": "您目前没有进行中的课程，请选择一门开始："},
    "course_line": {"en": "• {title}: {description} ({lessons} lessons)",
                    "zh": "• {title}：{description}（共 {lessons} 课）"},
    "course_none": {"en": "There are no courses to take right now.", "zh": "目前还没有开放的课程。"},
    "course_start": {"en": "▶ Start: {title}", "zh": "▶ 开始：{title}"},
    "course_continue": {"en": "⏯ Continue: {title} ({done}/{total})", "zh": "⏯ 继续：{title}（{done}/{total}）"},
    "course_done": {"en": "✅ {title}: completed", "zh": "✅ {title}：已完成"},
    "course_resume": {"en": "Welcome back! Let's continue “{title}” where you left off.",
                      "zh": "欢迎回来！我们从上次停下的地方继续《{title}》。"},
    "course_lesson": {"en": "📖 Lesson {n}/{total}: {title}", "zh": "📖 第 {n}/{total} 课：{title}"},
    "course_link": {"en": "🔗 Read more: {url}", "zh": "🔗 延伸阅读：{url}"},
    "course_question": {"en": "❓ Question {n}/{total}: {prompt}", "zh": "❓ 第 {n}/{total} 题：{prompt}"},
    "course_next": {"en": "Next lesson ▶", "zh": "下一课 ▶"},
    "course_finish": {"en": "Finish the course 🎓", "zh": "完成课程 🎓"},
    "course_correct": {"en": "✅ Correct! {explanation}", "zh": "✅ 回答正确！{explanation}"},
    "course_wrong": {"en": "❌ Not quite: the answer is “{answer}”. {explanation}",
                     "zh": "❌ 不太对，正确答案是“{answer}”。{explanation}"},
    "course_already_answered": {"en": "You've already answered that question; your first answer counts.",
                                "zh": "这道题您已经回答过了，以第一次的答案为准。"},
    "course_lesson_done_before": {"en": "You've already finished that lesson.", "zh": "这一课您已经学完了。"},
    "course_where_you_are": {"en": "Let's carry on from where you are:", "zh": "我们从您现在的进度继续："},
    "course_completed": {"en": "🎓 Congratulations, you've completed “{title}”! Quiz score: {correct}/{total}.",
                         "zh": "🎓 恭喜您完成了《{title}》！测验得分：{correct}/{total}。"},
    "course_resume_button": {"en": "Continue ▶", "zh": "继续学习 ▶"},
    "course_all": {"en": "📚 All courses", "zh": "📚 全部课程"},
    "privacy_intro": {"en": "🔒 This is what we store about you:", "zh": "🔒 我们保存的您的信息如下："},
    "privacy_profile": {"en": "Name: {name}\nE-mail: {email}\nPhone: {phone}",
                        "zh": "姓名：{name}\n邮箱：{email}\n电话：{phone}"},
    "privacy_channels": {"en": "Chats: {channels}", "zh": "聊天渠道：{channels}"},
    "privacy_counts": {
        "en": "Conversations: {conversations} ({messages} messages), tickets: {tickets}, orders: {orders}, "
              "survey answers: {survey_answers}, courses: {courses}",
        "zh": "对话：{conversations}（{messages} 条消息），工单：{tickets}，订单：{orders}，"
              "问卷回答：{survey_answers}，课程：{courses}",
    },
    "privacy_points": {"en": "Loyalty points: {points} (tier: {tier})", "zh": "会员积分：{points}（等级：{tier}）"},
    "privacy_consent_yes": {"en": "Surveys and offers: yes (/stop to opt out)",
                            "zh": "接收问卷和推广：是（输入 /stop 退订）"},
    "privacy_consent_no": {"en": "Surveys and offers: no", "zh": "接收问卷和推广：否"},
    "privacy_none": {"en": "(none)", "zh": "（无）"},
    "privacy_erase_button": {"en": "🗑 Erase my data", "zh": "🗑 删除我的数据"},
    "privacy_confirm": {
        "en": "Erasing removes your name, contact details, chats and points history for good, and cannot be "
              "undone. Orders are kept without your name for our accounts. Shall we go ahead?",
        "zh": "删除后，您的姓名、联系方式、聊天记录和积分记录将被永久清除，无法恢复。"
              "订单会以匿名方式保留用于财务记录。确定要删除吗？",
    },
    "privacy_confirm_button": {"en": "Yes, erase my data", "zh": "确定删除"},
    "privacy_keep_button": {"en": "No, keep it", "zh": "不删除"},
    "privacy_requested": {
        "en": "Your erasure request #{request} is recorded. Our team carries it out within 30 days; this chat "
              "forgets you once it is done.",
        "zh": "您的删除申请 #{request} 已记录。我们会在 30 天内处理完毕，届时本对话将不再保留您的信息。",
    },
    "privacy_pending": {"en": "Your erasure request is being processed.", "zh": "您的删除申请正在处理中。"},
    "privacy_kept": {"en": "OK, nothing was changed.", "zh": "好的，未做任何更改。"},
    "course_stale": {"en": "Sorry, that button doesn't work any more. Here are the courses you can take:",
                     "zh": "抱歉，这个按钮已失效。您可以从这里选择课程："},
}


def text(key: str, language: str, **values: object) -> str:
    """The text `key` in `language` (English when that language has none), with `values` filled in."""
    variants = TEXTS[key]
    return variants.get(language, variants["en"]).format(**values)


def language_from_code(code: str | None) -> str | None:
    """Telegram's language_code ("zh-hans", "en-GB", ...) as one of Kefu's languages, or None."""
    if not code:
        return None
    base = code.lower().replace("_", "-").split("-")[0]
    return base if base in LANGUAGES else None


# A word of English: Latin letters only, so an order number, an e-mail address or a code is no sign of a language.
_ENGLISH_WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
_EDGE_PUNCTUATION = ".,!?;:()[]\"'“”‘’…~*"
# "ok", "hi", "thx" or a product name alone are written by Chinese-speaking customers too: not enough to tell.
MIN_ENGLISH_WORDS = 2
MIN_ENGLISH_LETTERS = 6


def written_language(message: str) -> str | None:
    """The language a customer's message is clearly written in, or None when it is too short or has no letters
    to tell ("ok", "1", an emoji, an order number). A command's name says nothing; its argument does."""
    words = message.strip()
    if words.startswith("/"):
        words = words.split(maxsplit=1)[1] if len(words.split(maxsplit=1)) > 1 else ""
    if detect_language(words) == "zh":  # any Han ideograph that is not drowned in Latin words
        return "zh"
    english = [w for w in (token.strip(_EDGE_PUNCTUATION) for token in words.split()) if _ENGLISH_WORD.fullmatch(w)]
    if len(english) >= MIN_ENGLISH_WORDS and sum(len(w) for w in english) >= MIN_ENGLISH_LETTERS:
        return "en"
    return None
