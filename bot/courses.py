"""Training in the chat: the course catalogue, lessons in order, quizzes with immediate feedback, and progress
saved in the CRM so a customer continues where they left off (on any channel linked to them).

Button payloads (Telegram allows 64 bytes of callback data; ids are database integers):

    co:list                           the catalogue
    co:s:<course_id>                  start the course, or continue it where the customer left off
    co:n:<enrollment_id>:<lesson_id>  lesson done: the next lesson ("Next lesson ▶"), or the end ("Finish")
    qz:<enrollment_id>:<question_id>:<option>   a quiz answer (option: index into the question's options)

The CRM checks that an enrolment belongs to the customer pressing the button, so a stale or forged button gets
the catalogue back and never shows anyone else's progress.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.messages import Button, Reply, payload_number
from crm_store.dto import CourseStep, EnrollmentView
from crm_store.errors import DomainError, InvalidTransition

if TYPE_CHECKING:
    from bot.engine import _Turn

COURSE_INTENTS = {"start_course", "continue_course"}


async def on_intent(turn: _Turn, intent: str) -> list[Reply]:
    if intent == "continue_course":
        return await resume(turn, intent)
    return await catalogue(turn, intent)


async def on_button(turn: _Turn, kind: str, rest: str) -> list[Reply]:
    action, _, args = rest.partition(":")
    try:
        if kind == "qz":
            enrollment_id, question_id, option = (payload_number(x) for x in rest.split(":"))
            return await answer(turn, enrollment_id, question_id, option)
        if action == "list":
            return await catalogue(turn, None)
        if action == "s":
            return await start(turn, payload_number(args))
        if action == "n":
            enrollment_id, lesson_id = (payload_number(x) for x in args.split(":"))
            return await next_lesson(turn, enrollment_id, lesson_id)
    except (ValueError, DomainError):  # malformed, unknown, unpublished, or someone else's enrolment
        pass
    return await catalogue(turn, None, header="course_stale")


async def catalogue(turn: _Turn, intent: str | None, *, header: str = "course_catalogue") -> list[Reply]:
    """Published courses in the chat's language (any language when there are none), and those the customer
    has started; a button each: start, continue (with progress) or completed."""
    crm = turn.engine.crm
    courses = await crm.courses.catalogue(language=turn.language)
    enrolled = {e.course_id: e for e in await crm.courses.progress(customer_id=turn.customer_id)}
    shown = [c for c in courses if c.language == turn.language or c.id in enrolled] or courses
    if not shown:
        return [Reply(turn.t("course_none"), intent=intent)]
    lines = [turn.t(header)]
    buttons = []
    for course in shown:
        lines.append(turn.t("course_line", title=course.title, description=course.description,
                            lessons=course.lesson_count))
        e = enrolled.get(course.id)
        if e is None:
            label = turn.t("course_start", title=course.title)
        elif e.completed:
            label = turn.t("course_done", title=course.title)
        else:
            label = turn.t("course_continue", title=course.title, done=e.lessons_done, total=e.lessons_total)
        buttons.append(Button(label, f"co:s:{course.id}"))
    return [Reply("\n".join(lines), tuple(buttons), intent=intent)]


async def resume(turn: _Turn, intent: str | None) -> list[Reply]:
    """The course the customer studied last, at the lesson and question where they stopped."""
    crm = turn.engine.crm
    current = next((e for e in await crm.courses.progress(customer_id=turn.customer_id) if not e.completed), None)
    if current is None:
        return await catalogue(turn, intent, header="course_nothing_to_continue")
    step = await crm.courses.current_step(enrollment_id=current.id, customer_id=turn.customer_id)
    replies = step_replies(turn, step, intent)
    welcome = turn.t("course_resume", title=current.course_title)
    return [replace(replies[0], text=f"{welcome}\n\n{replies[0].text}"), *replies[1:]]


async def start(turn: _Turn, course_id: int) -> list[Reply]:
    crm = turn.engine.crm
    enrollment = await crm.courses.enroll(customer_id=turn.customer_id, course_id=course_id)
    step = await crm.courses.current_step(enrollment_id=enrollment.id, customer_id=turn.customer_id)
    return step_replies(turn, step, None)


async def answer(turn: _Turn, enrollment_id: int, question_id: int, option: int) -> list[Reply]:
    crm = turn.engine.crm
    result = await crm.courses.answer_quiz(enrollment_id=enrollment_id, customer_id=turn.customer_id,
                                           question_id=question_id, option=option)
    step = await crm.courses.current_step(enrollment_id=enrollment_id, customer_id=turn.customer_id)
    if result.duplicate:  # a double tap, or an old question's buttons: the first answer stands
        return [Reply(turn.t("course_already_answered"), (resume_button(turn, step.enrollment),))]
    if result.correct:
        feedback = turn.t("course_correct", explanation=result.explanation)
    else:
        feedback = turn.t("course_wrong", answer=result.correct_answer, explanation=result.explanation)
    if step.question is not None:
        return [Reply(feedback.strip()), question_reply(turn, step)]
    return [Reply(feedback.strip(), (next_button(turn, step),) if step.lesson else ())]


async def next_lesson(turn: _Turn, enrollment_id: int, lesson_id: int) -> list[Reply]:
    crm = turn.engine.crm
    try:
        result = await crm.courses.complete_lesson(enrollment_id=enrollment_id, customer_id=turn.customer_id,
                                                   lesson_id=lesson_id)
    except InvalidTransition:  # the quiz is not answered yet, or a lesson further on: show where they are
        step = await crm.courses.current_step(enrollment_id=enrollment_id, customer_id=turn.customer_id)
        return [Reply(turn.t("course_where_you_are")), *step_replies(turn, step, None)]
    enrollment = result.step.enrollment
    if result.duplicate and not enrollment.completed:
        return [Reply(turn.t("course_lesson_done_before"), (resume_button(turn, enrollment),))]
    return step_replies(turn, result.step, None)


def step_replies(turn: _Turn, step: CourseStep, intent: str | None) -> list[Reply]:
    """The lesson (title, Markdown body, link, image), then its first unanswered question or the Next button."""
    lesson = step.lesson
    if lesson is None:
        return [completed_reply(turn, step.enrollment, intent)]
    parts = [turn.t("course_lesson", n=lesson.position, total=step.enrollment.lessons_total, title=lesson.title),
             lesson.body.strip()]
    if lesson.link_url:
        parts.append(turn.t("course_link", url=lesson.link_url))
    body = "\n\n".join(p for p in parts if p)
    if step.question is None:
        return [Reply(body, (next_button(turn, step),), intent=intent, image_url=lesson.image_url, markdown=True)]
    return [Reply(body, intent=intent, image_url=lesson.image_url, markdown=True), question_reply(turn, step)]


def question_reply(turn: _Turn, step: CourseStep) -> Reply:
    assert step.lesson is not None and step.question is not None
    question, quiz = step.question, step.lesson.quiz
    text = turn.t("course_question", n=quiz.index(question) + 1, total=len(quiz), prompt=question.prompt)
    buttons = tuple(Button(option, f"qz:{step.enrollment.id}:{question.id}:{i}")
                    for i, option in enumerate(question.options))
    return Reply(text, buttons)


def next_button(turn: _Turn, step: CourseStep) -> Button:
    assert step.lesson is not None
    last = step.lesson.position >= step.enrollment.lessons_total
    return Button(turn.t("course_finish" if last else "course_next"), f"co:n:{step.enrollment.id}:{step.lesson.id}")


def resume_button(turn: _Turn, enrollment: EnrollmentView) -> Button:
    return Button(turn.t("course_resume_button"), f"co:s:{enrollment.course_id}")


def completed_reply(turn: _Turn, enrollment: EnrollmentView, intent: str | None) -> Reply:
    text = turn.t("course_completed", title=enrollment.course_title, correct=enrollment.quiz_correct,
                  total=enrollment.quiz_total)
    return Reply(text, (Button(turn.t("course_all"), "co:list"),), intent=intent)
