"""Training in the chat, end to end: through the web chat API (real HTTP server) and on Telegram (aiogram's real
polling loop against the fake Bot API server), in English and Chinese: the catalogue, every lesson in order, quiz
feedback right and wrong, leaving mid-course and continuing where the customer left off, completion with the
score on the timeline, double taps, and stale or forged buttons that show nobody else's progress."""

from __future__ import annotations

from typing import Any

import httpx

from kefu.sample_courses import load_sample_courses
from tests.bot import test_telegram, test_webchat
from tests.bot.conftest import Stack
from tests.bot.test_telegram import Running
from tests.bot.test_webchat import Served, post

# The fixtures of the channel tests: a real uvicorn server for the web chat, aiogram polling the fake Telegram.
served = test_webchat.served
running = test_telegram.running


class WebVisitor:
    """A visitor in the web chat; `say` and `press` return the bot's replies (JSON)."""

    def __init__(self, served: Served, visitor_id: str, language: str = "en") -> None:
        self.served = served
        self.visitor_id = visitor_id
        self.language = language

    async def _send(self, **body: Any) -> list[dict[str, Any]]:
        response: httpx.Response = await post(self.served, visitor_id=self.visitor_id, language=self.language,
                                              **body)
        assert response.status_code == 200, response.text
        return list(response.json()["replies"])

    async def say(self, text: str) -> list[dict[str, Any]]:
        return await self._send(text=text)

    async def press(self, payload: str) -> list[dict[str, Any]]:
        return await self._send(payload=payload)

    async def customer_id(self) -> int:
        found = await self.served.crm.customers.identify(channel="webchat", external_id=self.visitor_id)
        return int(found.customer.id)


def payloads(reply: dict[str, Any]) -> list[str]:
    return [b["payload"] for b in reply["buttons"]]


def button(reply: dict[str, Any], label: str) -> str:
    return next(b["payload"] for b in reply["buttons"] if b["label"] == label)


async def test_a_web_visitor_takes_a_course_leaves_continues_and_completes_it(served: Served) -> None:
    await load_sample_courses(served.crm)
    courses = {c.key: c for c in await served.crm.courses.catalogue()}
    course = await served.crm.courses.get_course(course_id=courses["tea-brewing-basics-en"].id)
    water, leaf, gongfu = course.lessons
    ann = WebVisitor(served, "v-course-1")

    (listing,) = await ann.say("/courses")
    assert listing["text"].startswith("📚 Our tea courses:") and "Tea brewing basics" in listing["text"]
    assert "泡茶入门" not in listing["text"]  # the chat speaks English
    assert [(b["label"], b["payload"]) for b in listing["buttons"]] == [
        ("▶ Start: Tea brewing basics", f"co:s:{course.id}")]

    lesson, question = await ann.press(f"co:s:{course.id}")
    assert lesson["text"].startswith("📖 Lesson 1/3: Water and temperature\n\nGood tea starts with **fresh")
    assert lesson["image_url"] == water.image_url and lesson["buttons"] == []
    assert question["text"] == "❓ Question 1/1: Which water temperature suits a green tea such as Longjing?"
    assert [b["label"] for b in question["buttons"]] == ["100 °C, just boiled", "75–80 °C", "50 °C"]

    (feedback,) = await ann.press(question["buttons"][0]["payload"])  # wrong
    assert feedback["text"].startswith("❌ Not quite: the answer is “75–80 °C”. Green tea is delicate")
    assert [b["label"] for b in feedback["buttons"]] == ["Next lesson ▶"]

    lesson, question = await ann.press(feedback["buttons"][0]["payload"])
    assert lesson["text"].startswith("📖 Lesson 2/3: How much leaf, how long")
    assert "🔗 Read more: https://kefu-tea.example/guides/brewing-chart" in lesson["text"]
    assert lesson["image_url"] is None and question["text"].startswith("❓ Question 1/2: How much leaf")
    feedback, question = await ann.press(button(question, "About 1 teaspoon (2–3 g)"))  # right
    assert feedback["text"] == "✅ Correct! 2–3 g per 200 ml is the everyday Western-style measure."
    assert question["text"] == "❓ Question 2/2: Your tea tastes bitter. What should you change first?"

    # The visitor asks something else, then comes back to the course: it resumes at the open question.
    (aside,) = await ann.say("how long does shipping take?")
    assert aside["decision"] == "answer"
    resumed, question = await ann.say("continue my course")
    assert resumed["intent"] == "continue_course"
    assert resumed["text"].startswith("Welcome back! Let's continue “Tea brewing basics” where you left off.\n\n"
                                      "📖 Lesson 2/3: How much leaf, how long")
    assert question["text"].startswith("❓ Question 2/2: Your tea tastes bitter")

    (feedback,) = await ann.press(button(question, "Steep shorter or cooler"))
    assert feedback["text"].startswith("✅ Correct!") and payloads(feedback) == [f"co:n:{feedback_enrollment(question)}"
                                                                                 f":{leaf.id}"]
    lesson, question = await ann.press(payloads(feedback)[0])
    assert lesson["text"].startswith("📖 Lesson 3/3: Gongfu style")
    (feedback,) = await ann.press(button(question, "Five or more"))
    assert [b["label"] for b in feedback["buttons"]] == ["Finish the course 🎓"]

    (done,) = await ann.press(payloads(feedback)[0])
    assert done["text"] == "🎓 Congratulations, you've completed “Tea brewing basics”! Quiz score: 3/4."
    (again,) = await ann.press(payloads(feedback)[0])  # Finish pressed again: still done, nothing new
    assert again["text"] == done["text"]

    customer_id = await ann.customer_id()
    (progress,) = await served.crm.courses.progress(customer_id=customer_id)
    assert (progress.status, progress.lessons_done, progress.quiz_correct, progress.quiz_total) == (
        "completed", 3, 3, 4)
    timeline = await served.crm.timeline.timeline(customer_id=customer_id)
    course_kinds = [e.kind for e in timeline if e.kind.startswith("course.")]
    assert course_kinds.count("course.lesson_completed") == 3 and course_kinds.count("course.quiz_answered") == 4
    assert course_kinds[0] == "course.started" and course_kinds[-1] == "course.completed"
    completed = next(e for e in timeline if e.kind == "course.completed")
    assert completed.summary == "Completed the course Tea brewing basics (quiz 3/4)"
    assert gongfu.id in {e.data.get("lesson_id") for e in timeline}

    (listing,) = await ann.say("/courses")
    assert [b["label"] for b in listing["buttons"]] == ["✅ Tea brewing basics: completed"]


def feedback_enrollment(question: dict[str, Any]) -> str:
    """The enrolment id in a quiz button (qz:<enrollment>:<question>:<option>)."""
    return question["buttons"][0]["payload"].split(":")[1]


async def test_stale_forged_and_malformed_buttons_get_a_polite_answer_and_no_one_elses_data(
    served: Served,
) -> None:
    await load_sample_courses(served.crm)
    course = await served.crm.courses.find_course(key="tea-brewing-basics-en")
    ann, mallory = WebVisitor(served, "v-course-ann"), WebVisitor(served, "v-course-mal")
    _, question = await ann.press(f"co:s:{course.id}")
    enrollment_id = feedback_enrollment(question)
    question_id = course.lessons[0].quiz[0].id

    forged = [
        f"qz:{enrollment_id}:{question_id}:1",  # Ann's enrolment, pressed by someone else
        f"co:n:{enrollment_id}:{course.lessons[0].id}",
        "co:s:999999", "co:n:1", "co:n:x:y", "qz:1:2", "qz:a:b:c", "co:", "qz:", "co:zzz",
    ]
    for payload in forged:
        (reply,) = await mallory.press(payload)
        assert reply["text"].startswith("Sorry, that button doesn't work any more."), payload
        assert "Tea brewing basics" in reply["text"] and "Lesson" not in reply["text"]
        assert payloads(reply) == [f"co:s:{course.id}"]  # the catalogue, to start their own course
    (own,) = await served.crm.courses.progress(customer_id=await ann.customer_id())
    assert (own.quiz_answered, own.lessons_done) == (0, 0)
    assert await served.crm.courses.progress(customer_id=await mallory.customer_id()) == []

    # Ann's own buttons: an answer out of range is stale too; "Next" before the quiz shows where she is.
    (reply,) = await ann.press(f"qz:{enrollment_id}:{question_id}:7")
    assert reply["text"].startswith("Sorry, that button doesn't work any more.")
    where, lesson, question = await ann.press(f"co:n:{enrollment_id}:{course.lessons[0].id}")
    assert where["text"] == "Let's carry on from where you are:"
    assert lesson["text"].startswith("📖 Lesson 1/3") and question["text"].startswith("❓ Question 1/1")
    (first,) = await ann.press(f"qz:{enrollment_id}:{question_id}:1")
    (second,) = await ann.press(f"qz:{enrollment_id}:{question_id}:0")  # the first answer stands
    assert first["text"].startswith("✅ Correct!")
    assert second["text"] == "You've already answered that question; your first answer counts."
    assert payloads(second) == [f"co:s:{course.id}"]


async def test_continue_without_a_course_offers_the_catalogue_in_chinese(served: Served) -> None:
    await load_sample_courses(served.crm)
    li = WebVisitor(served, "v-course-zh", language="zh-CN")
    (reply,) = await li.say("继续学习")
    assert reply["intent"] == "continue_course"
    assert reply["text"].startswith("您目前没有进行中的课程，请选择一门开始：") and "泡茶入门" in reply["text"]
    assert [b["label"] for b in reply["buttons"]] == ["▶ 开始：泡茶入门"]


# --- Telegram --------------------------------------------------------------------------------------------------


class TelegramUser:
    """A Telegram user writing to the bot and pressing its inline buttons; each call waits for `expect` new
    messages from the bot and returns them."""

    def __init__(self, running: Running, chat_id: int, language_code: str) -> None:
        self.tg = running.tg
        self.chat_id = chat_id
        self.language_code = language_code
        self.seen = 0

    def _shown(self) -> list[dict[str, Any]]:
        """The bot's messages that say something (a lesson's picture alone, sent before its text, does not)."""
        return [m for m in self.tg.messages_to(self.chat_id) if shown(m)]

    async def _wait(self, expect: int) -> list[dict[str, Any]]:
        await self.tg.wait_until(lambda: len(self._shown()) >= self.seen + expect,
                                 what=f"{expect} more message(s) in chat {self.chat_id}")
        messages = self._shown()
        new, self.seen = messages[self.seen:], len(messages)
        return new

    async def say(self, text: str, expect: int = 1) -> list[dict[str, Any]]:
        self.tg.user_message(self.chat_id, text, language_code=self.language_code)
        return await self._wait(expect)

    async def press(self, message: dict[str, Any], label: str, expect: int = 1, taps: int = 1) -> list[dict[str, Any]]:
        data = next(data for text, data in inline(message) if text == label)
        for _ in range(taps):
            self.tg.callback(self.chat_id, data, message_id=message["message_id"])
        return await self._wait(expect)

    async def finish_course(self, question: dict[str, Any], answers: list[str], next_label: str,
                            finish_label: str) -> dict[str, Any]:
        """Answer lesson 2's open question, then lesson 3's, and finish; returns the closing message."""
        (feedback,) = await self.press(question, answers[0])
        lesson, question = await self.press(feedback, next_label, expect=2)
        assert shown(lesson).startswith("📖") and "3/3" in shown(lesson)
        (feedback,) = await self.press(question, answers[1])
        (done,) = await self.press(feedback, finish_label)
        return done


def inline(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]


def shown(message: dict[str, Any]) -> str:
    return str(message.get("text") or message.get("caption") or "")


async def test_a_course_on_telegram_in_english_with_a_double_tap(running: Running) -> None:
    stack: Stack = running.stack
    await load_sample_courses(stack.crm)
    anna = TelegramUser(running, 4101, "en")

    (listing,) = await anna.say("/courses")
    assert shown(listing).startswith("📚 Our tea courses:")
    lesson, question = await anna.press(listing, "▶ Start: Tea brewing basics", expect=2)
    assert shown(lesson).startswith("📖 Lesson 1/3: Water and temperature")
    assert all(len(data.encode()) <= 64 for _, data in inline(question))
    picture = (await stack.crm.courses.find_course(key="tea-brewing-basics-en")).lessons[0].image_url
    assert [c.params["photo"] for c in running.tg.calls("sendPhoto")] == [picture]

    # a double tap on an answer: one feedback, and the second tap is told the first answer counts
    replies = await anna.press(question, "75–80 °C", expect=2, taps=2)
    texts = sorted(shown(m) for m in replies)
    assert texts[0].startswith("You've already answered") and texts[1].startswith("✅ Correct!")
    feedback = next(m for m in replies if shown(m).startswith("✅"))

    lesson, question = await anna.press(feedback, "Next lesson ▶", expect=2)
    assert shown(lesson).startswith("📖 Lesson 2/3") and "🔗 Read more:" in shown(lesson)
    feedback, question = await anna.press(question, "A handful (15 g)", expect=2)
    assert shown(feedback).startswith("❌ Not quite: the answer is “About 1 teaspoon (2–3 g)”.")

    resumed, question = await anna.say("continue my course", expect=2)
    assert shown(resumed).startswith("Welcome back!") and "Lesson 2/3" in shown(resumed)
    assert shown(question).startswith("❓ Question 2/2")
    done = await anna.finish_course(question, ["Steep shorter or cooler", "Five or more"], "Next lesson ▶",
                                    "Finish the course 🎓")
    assert shown(done) == "🎓 Congratulations, you've completed “Tea brewing basics”! Quiz score: 3/4."

    found = await stack.crm.customers.identify(channel="telegram", external_id="4101")
    timeline = await stack.crm.timeline.timeline(customer_id=found.customer.id)
    assert "course.completed" in [e.kind for e in timeline]


async def test_a_course_on_telegram_in_chinese(running: Running) -> None:
    stack: Stack = running.stack
    await load_sample_courses(stack.crm)
    li = TelegramUser(running, 4102, "zh-hans")

    (listing,) = await li.say("/courses")
    assert shown(listing).startswith("📚 我们的茶课程：") and "Tea brewing basics" not in shown(listing)
    lesson, question = await li.press(listing, "▶ 开始：泡茶入门", expect=2)
    assert shown(lesson).startswith("📖 第 1/3 课：水与水温")
    (feedback,) = await li.press(question, "75–80 °C")
    assert shown(feedback).startswith("✅ 回答正确！")
    lesson, question = await li.press(feedback, "下一课 ▶", expect=2)
    assert "🔗 延伸阅读：https://kefu-tea.example/guides/brewing-chart-zh" in shown(lesson)
    feedback, question = await li.press(question, "一大把（15 克）", expect=2)
    assert shown(feedback).startswith("❌ 不太对，正确答案是“约一茶匙（2–3 克）”。")
    assert shown(question).startswith("❓ 第 2/2 题：茶汤发苦")

    (listing,) = await li.say("/courses")  # away to the catalogue: the course shows its progress
    assert [text for text, _ in inline(listing)] == ["⏯ 继续：泡茶入门（1/3）"]
    lesson, question = await li.press(listing, "⏯ 继续：泡茶入门（1/3）", expect=2)
    assert shown(lesson).startswith("📖 第 2/3 课") and shown(question).startswith("❓ 第 2/2 题")
    done = await li.finish_course(question, ["缩短时间或降低水温", "五次以上"], "下一课 ▶", "完成课程 🎓")
    assert shown(done) == "🎓 恭喜您完成了《泡茶入门》！测验得分：3/4。"

    found = await stack.crm.customers.identify(channel="telegram", external_id="4102")
    (progress,) = await stack.crm.courses.progress(customer_id=found.customer.id)
    assert (progress.course_key, progress.status, progress.quiz_correct) == ("tea-brewing-basics-zh", "completed", 3)
