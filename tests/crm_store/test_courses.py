"""Training: lessons in order, the quiz before the lesson is done, the first answer stands, double taps change
nothing, completion after the last lesson, progress, and every step on the customer's timeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_store import models as m
from crm_store.errors import ConflictError, InvalidTransition, NotFound
from crm_store.events import CourseCompleted, CourseStarted, LessonCompleted


def lesson(title: str, *questions: tuple[str, list[str], int], **extra: Any) -> dict[str, Any]:
    quiz = [{"prompt": p, "options": o, "correct": c, "explanation": f"Because of {p}."} for p, o, c in questions]
    return {"title": title, "body": f"**{title}** in a few words.", "quiz": quiz, **extra}


LESSONS = [
    lesson("Water", ("Green tea water?", ["100 °C", "80 °C"], 1), image_url="https://img.example/water.png"),
    lesson("Leaf", ("How much leaf?", ["2 g", "20 g"], 0), ("Bitter cup?", ["Steep longer", "Steep shorter"], 1),
           link_url="https://example.com/chart"),
    lesson("Gongfu"),  # no quiz
]


async def make_course(crm, key: str = "basics", language: str = "en", **overrides: Any):  # type: ignore[no-untyped-def]
    fields: dict[str, Any] = {"key": key, "title": f"Course {key}", "language": language, "lessons": LESSONS,
                              "description": "Tea 101"}
    return await crm.courses.create_course(**(fields | overrides))


async def customer(crm, name: str = "Ann"):  # type: ignore[no-untyped-def]
    return await crm.customers.create(name=name, email=f"{name.lower()}@example.com")


async def count(crm, model) -> int:  # type: ignore[no-untyped-def]
    async with crm.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


async def test_a_course_keeps_its_lessons_and_quizzes_in_order(crm) -> None:
    course = await make_course(crm)
    assert (course.key, course.language, course.lesson_count, course.published) == ("basics", "en", 3, True)
    assert [(lesson.position, lesson.title) for lesson in course.lessons] == [(1, "Water"), (2, "Leaf"),
                                                                              (3, "Gongfu")]
    assert course.lessons[0].image_url == "https://img.example/water.png" and course.lessons[0].link_url is None
    assert course.lessons[1].link_url == "https://example.com/chart"
    assert [q.prompt for q in course.lessons[1].quiz] == ["How much leaf?", "Bitter cup?"]
    assert course.lessons[1].quiz[1].options == ("Steep longer", "Steep shorter")
    assert course.lessons[1].quiz[1].correct_option == 1 and course.lessons[2].quiz == ()
    assert await crm.courses.find_course(key="basics") == course
    assert await crm.courses.find_course(key="nope") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lessons": []}, "at least one lesson"),
        ({"title": " "}, "needs a title"),
        ({"key": ""}, "needs a key"),
        ({"lessons": [{"title": "", "quiz": []}]}, "Lesson 1 needs a title"),
        ({"lessons": [lesson("A"), lesson("B", ("Q?", ["only one"], 0))]}, "Lesson 2, question 1 needs at least two"),
        ({"lessons": [lesson("A", ("Q?", ["a", "b"], 2))]}, "from 0 to 1"),
        ({"lessons": [lesson("A", ("Q?", ["a", "b"], -1))]}, "from 0 to 1"),
        ({"lessons": [lesson("A", ("", ["a", "b"], 0))]}, "needs a prompt"),
    ],
)
async def test_invalid_courses_are_refused_with_a_clear_message(crm, overrides: dict[str, Any],
                                                                message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await make_course(crm, **overrides)
    assert await count(crm, m.Course) == await count(crm, m.Lesson) == 0


async def test_a_course_key_is_unique(crm) -> None:
    await make_course(crm)
    with pytest.raises(ConflictError, match="already exists"):
        await make_course(crm)
    assert await count(crm, m.Course) == 1 and await count(crm, m.Lesson) == 3


async def test_the_catalogue_lists_published_courses_the_customers_language_first(crm) -> None:
    en = await make_course(crm, "en-course")
    zh = await make_course(crm, "zh-course", language="zh")
    await make_course(crm, "draft", published=False)
    assert [c.key for c in await crm.courses.catalogue()] == ["en-course", "zh-course"]
    assert [c.key for c in await crm.courses.catalogue(language="zh")] == ["zh-course", "en-course"]
    assert {c.id: c.lesson_count for c in await crm.courses.catalogue()} == {en.id: 3, zh.id: 3}
    with pytest.raises(NotFound):
        await crm.courses.enroll(customer_id=(await customer(crm)).id,
                                 course_id=(await crm.courses.find_course(key="draft")).id)


async def test_enrolling_twice_starts_the_course_once(crm, bus) -> None:
    course, ann = await make_course(crm), await customer(crm)
    first = await crm.courses.enroll(customer_id=ann.id, course_id=course.id)
    again = await crm.courses.enroll(customer_id=ann.id, course_id=course.id)
    assert (first.created, again.created, again.id) == (True, False, first.id)
    assert (first.status, first.current_position, first.lessons_done, first.lessons_total) == (
        "in_progress", 1, 0, 3)
    assert len(bus.of(CourseStarted)) == 1 and bus.of(CourseStarted)[0].enrollment_id == first.id


async def test_a_double_tap_on_start_enrolls_once(crm, bus) -> None:
    course, ann = await make_course(crm), await customer(crm)
    results = await asyncio.gather(*[crm.courses.enroll(customer_id=ann.id, course_id=course.id) for _ in range(4)])
    assert len({r.id for r in results}) == 1 and [r.created for r in results].count(True) == 1
    assert await count(crm, m.Enrollment) == 1 and len(bus.of(CourseStarted)) == 1


async def test_lessons_in_order_quiz_first_then_completion(crm, bus) -> None:
    course, ann = await make_course(crm), await customer(crm)
    water, leaf, gongfu = course.lessons
    e = await crm.courses.enroll(customer_id=ann.id, course_id=course.id)
    ids = {"enrollment_id": e.id, "customer_id": ann.id}

    step = await crm.courses.current_step(**ids)
    assert (step.lesson.title, step.question.prompt) == ("Water", "Green tea water?")
    with pytest.raises(InvalidTransition, match="quiz first"):
        await crm.courses.complete_lesson(**ids, lesson_id=water.id)
    with pytest.raises(InvalidTransition, match="Lesson 1 comes first"):
        await crm.courses.complete_lesson(**ids, lesson_id=leaf.id)
    with pytest.raises(InvalidTransition, match="not started"):  # no answering ahead either
        await crm.courses.answer_quiz(**ids, question_id=leaf.quiz[0].id, option=0)

    right = await crm.courses.answer_quiz(**ids, question_id=water.quiz[0].id, option=1)
    assert (right.correct, right.duplicate, right.correct_answer) == (True, False, "80 °C")
    assert right.explanation == "Because of Green tea water?."
    assert (await crm.courses.current_step(**ids)).question is None
    done = await crm.courses.complete_lesson(**ids, lesson_id=water.id)
    assert (done.duplicate, done.course_completed) == (False, False)
    assert (done.step.lesson.title, done.step.question.prompt) == ("Leaf", "How much leaf?")
    assert (done.step.enrollment.current_position, done.step.enrollment.lessons_done) == (2, 1)

    wrong = await crm.courses.answer_quiz(**ids, question_id=leaf.quiz[0].id, option=1)
    assert (wrong.correct, wrong.chosen_option, wrong.correct_answer) == (False, 1, "2 g")
    assert (await crm.courses.current_step(**ids)).question.prompt == "Bitter cup?"
    await crm.courses.answer_quiz(**ids, question_id=leaf.quiz[1].id, option=1)
    step = (await crm.courses.complete_lesson(**ids, lesson_id=leaf.id)).step
    assert (step.lesson.title, step.question) == ("Gongfu", None)  # a lesson without a quiz: just "Next"

    last = await crm.courses.complete_lesson(**ids, lesson_id=gongfu.id)
    assert (last.course_completed, last.step.lesson, last.step.question) == (True, None, None)
    finished = last.step.enrollment
    assert (finished.status, finished.lessons_done, finished.quiz_correct, finished.quiz_answered,
            finished.quiz_total) == ("completed", 3, 2, 3, 3)
    assert finished.completed and finished.completed_at is not None

    assert [ev.lesson_id for ev in bus.of(LessonCompleted)] == [water.id, leaf.id, gongfu.id]
    assert [ev.enrollment_id for ev in bus.of(CourseCompleted)] == [e.id]
    # again: nothing changes, nothing is announced
    again = await crm.courses.complete_lesson(**ids, lesson_id=gongfu.id)
    assert (again.duplicate, again.course_completed, again.step.enrollment.status) == (True, False, "completed")
    assert len(bus.of(CourseCompleted)) == 1 and len(bus.of(LessonCompleted)) == 3


async def test_the_first_answer_stands(crm) -> None:
    course, ann = await make_course(crm), await customer(crm)
    e = await crm.courses.enroll(customer_id=ann.id, course_id=course.id)
    question = course.lessons[0].quiz[0]
    ids = {"enrollment_id": e.id, "customer_id": ann.id, "question_id": question.id}
    first = await crm.courses.answer_quiz(**ids, option=0)
    second = await crm.courses.answer_quiz(**ids, option=1)
    assert (first.correct, first.duplicate) == (False, False)
    assert (second.correct, second.chosen_option, second.duplicate) == (False, 0, True)
    assert await count(crm, m.QuizAnswer) == 1


async def test_a_double_tap_answers_and_completes_once(crm, bus) -> None:
    course, ann = await make_course(crm), await customer(crm)
    e = await crm.courses.enroll(customer_id=ann.id, course_id=course.id)
    ids = {"enrollment_id": e.id, "customer_id": ann.id}
    question = course.lessons[0].quiz[0]
    answers = await asyncio.gather(*[
        crm.courses.answer_quiz(**ids, question_id=question.id, option=n % 2) for n in range(4)
    ])
    assert [a.duplicate for a in answers].count(False) == 1
    assert len({a.chosen_option for a in answers}) == 1 and await count(crm, m.QuizAnswer) == 1

    results = await asyncio.gather(*[
        crm.courses.complete_lesson(**ids, lesson_id=course.lessons[0].id) for _ in range(4)
    ])
    assert [r.duplicate for r in results].count(False) == 1
    assert {r.step.enrollment.current_position for r in results} == {2}
    assert await count(crm, m.LessonCompletion) == 1 and len(bus.of(LessonCompleted)) == 1


async def test_nobody_else_can_use_an_enrollment(crm) -> None:
    course, ann, bob = await make_course(crm), await customer(crm, "Ann"), await customer(crm, "Bob")
    e = await crm.courses.enroll(customer_id=ann.id, course_id=course.id)
    question = course.lessons[0].quiz[0]
    with pytest.raises(NotFound, match="No such course enrolment"):
        await crm.courses.current_step(enrollment_id=e.id, customer_id=bob.id)
    with pytest.raises(NotFound, match="No such course enrolment"):
        await crm.courses.answer_quiz(enrollment_id=e.id, customer_id=bob.id, question_id=question.id, option=1)
    with pytest.raises(NotFound, match="No such course enrolment"):
        await crm.courses.complete_lesson(enrollment_id=e.id, customer_id=bob.id, lesson_id=course.lessons[0].id)
    with pytest.raises(NotFound):
        await crm.courses.current_step(enrollment_id=e.id + 1000, customer_id=ann.id)
    other = await make_course(crm, "other")
    with pytest.raises(NotFound, match="No such question"):  # a question of another course
        await crm.courses.answer_quiz(enrollment_id=e.id, customer_id=ann.id,
                                      question_id=other.lessons[0].quiz[0].id, option=1)
    with pytest.raises(ValueError, match="No such option"):
        await crm.courses.answer_quiz(enrollment_id=e.id, customer_id=ann.id, question_id=question.id, option=5)
    assert await count(crm, m.QuizAnswer) == 0 and await count(crm, m.LessonCompletion) == 0


async def test_progress_lists_the_customers_courses_latest_first(crm) -> None:
    first, second, ann = await make_course(crm, "one"), await make_course(crm, "two"), await customer(crm)
    assert await crm.courses.progress(customer_id=ann.id) == []
    e1 = await crm.courses.enroll(customer_id=ann.id, course_id=first.id)
    await crm.courses.enroll(customer_id=ann.id, course_id=second.id)
    await crm.courses.answer_quiz(enrollment_id=e1.id, customer_id=ann.id,
                                  question_id=first.lessons[0].quiz[0].id, option=1)
    await crm.courses.complete_lesson(enrollment_id=e1.id, customer_id=ann.id, lesson_id=first.lessons[0].id)

    progress = await crm.courses.progress(customer_id=ann.id)
    assert [(p.course_key, p.lessons_done, p.lessons_total, p.status) for p in progress] == [
        ("one", 1, 3, "in_progress"), ("two", 0, 3, "in_progress")]
    assert progress[0].quiz_correct == 1 and progress[0].course_title == "Course one"
    assert await crm.courses.progress(customer_id=(await customer(crm, "Bob")).id) == []


async def test_every_step_is_on_the_timeline(crm) -> None:
    course, ann = await make_course(crm), await customer(crm)
    e = await crm.courses.enroll(customer_id=ann.id, course_id=course.id)
    ids = {"enrollment_id": e.id, "customer_id": ann.id}
    water, leaf, gongfu = course.lessons
    await crm.courses.answer_quiz(**ids, question_id=water.quiz[0].id, option=0)
    await crm.courses.complete_lesson(**ids, lesson_id=water.id)
    for question in leaf.quiz:
        await crm.courses.answer_quiz(**ids, question_id=question.id, option=question.correct_option)
    await crm.courses.complete_lesson(**ids, lesson_id=leaf.id)
    await crm.courses.complete_lesson(**ids, lesson_id=gongfu.id)

    timeline = [t for t in await crm.timeline.timeline(customer_id=ann.id) if t.kind.startswith("course.")]
    assert [t.kind for t in timeline] == [
        "course.started", "course.quiz_answered", "course.lesson_completed", "course.quiz_answered",
        "course.quiz_answered", "course.lesson_completed", "course.lesson_completed", "course.completed",
    ]
    assert timeline[0].summary == "Started the course Course basics"
    assert timeline[1].summary == "Quiz ✗: Green tea water?" and timeline[1].data["correct"] is False
    assert timeline[2].summary == "Completed lesson 1: Water"
    assert timeline[-1].summary == "Completed the course Course basics (quiz 2/3)"
    assert timeline[-1].data == {"course_id": course.id, "enrollment_id": e.id, "quiz_correct": 2, "quiz_total": 3}
    # nobody else's timeline shows it
    bob = await customer(crm, "Bob")
    assert not [t for t in await crm.timeline.timeline(customer_id=bob.id) if t.kind.startswith("course.")]


async def test_merging_customers_keeps_the_progress_further_along(crm) -> None:
    one, two = await make_course(crm, "one"), await make_course(crm, "two")
    chat, known = await customer(crm, "Chat"), await customer(crm, "Known")
    ahead = await crm.courses.enroll(customer_id=chat.id, course_id=one.id)
    await crm.courses.answer_quiz(enrollment_id=ahead.id, customer_id=chat.id,
                                  question_id=one.lessons[0].quiz[0].id, option=1)
    await crm.courses.complete_lesson(enrollment_id=ahead.id, customer_id=chat.id, lesson_id=one.lessons[0].id)
    await crm.courses.enroll(customer_id=known.id, course_id=one.id)  # the same course, not as far
    only_chat = await crm.courses.enroll(customer_id=chat.id, course_id=two.id)

    await crm.customers.merge(source_id=chat.id, target_id=known.id)  # what linking a chat does

    progress = {p.course_key: p for p in await crm.courses.progress(customer_id=known.id)}
    assert {k: (p.id, p.lessons_done) for k, p in progress.items()} == {"one": (ahead.id, 1), "two": (only_chat.id, 0)}
    assert await crm.courses.progress(customer_id=chat.id) == []
    assert await count(crm, m.Enrollment) == 2 and await count(crm, m.QuizAnswer) == 1
    step = await crm.courses.current_step(enrollment_id=ahead.id, customer_id=known.id)
    assert step.lesson.title == "Leaf"


# --- authoring and the completion report (the console) ---------------------------------------------------------


async def finish_first_lesson(crm, course, who):  # type: ignore[no-untyped-def]
    """`who` enrols and completes lesson 1 (answering its quiz right)."""
    e = await crm.courses.enroll(customer_id=who.id, course_id=course.id)
    water = course.lessons[0]
    await crm.courses.answer_quiz(enrollment_id=e.id, customer_id=who.id, question_id=water.quiz[0].id, option=1)
    await crm.courses.complete_lesson(enrollment_id=e.id, customer_id=who.id, lesson_id=water.id)
    return e


async def test_the_completion_report_counts_enrolled_completed_and_right_answers(crm) -> None:
    course, other = await make_course(crm), await make_course(crm, key="draft", published=False)
    ann, bob = await customer(crm, "Ann"), await customer(crm, "Bob")
    e = await finish_first_lesson(crm, course, ann)
    leaf, gongfu = course.lessons[1:]
    ids = {"enrollment_id": e.id, "customer_id": ann.id}
    await crm.courses.answer_quiz(**ids, question_id=leaf.quiz[0].id, option=1)  # wrong
    await crm.courses.answer_quiz(**ids, question_id=leaf.quiz[1].id, option=1)  # right
    await crm.courses.complete_lesson(**ids, lesson_id=leaf.id)
    await crm.courses.complete_lesson(**ids, lesson_id=gongfu.id)
    e_bob = await crm.courses.enroll(customer_id=bob.id, course_id=course.id)
    await crm.courses.answer_quiz(enrollment_id=e_bob.id, customer_id=bob.id, question_id=course.lessons[0].quiz[0].id,
                                  option=0)  # wrong

    report = {s.course.key: s for s in await crm.courses.overview()}
    basics = report["basics"]
    assert (basics.enrolled, basics.completed, basics.quiz_answers, basics.quiz_correct) == (2, 1, 4, 2)
    assert (basics.average_score, basics.completion_rate, basics.furthest_position) == (50.0, 0.5, 3)
    draft = report["draft"]
    assert (draft.course.published, draft.enrolled, draft.average_score, draft.furthest_position) == (False, 0, None, 0)
    assert (await crm.courses.report(course_id=other.id)).course.title == "Course draft"
    with pytest.raises(NotFound):
        await crm.courses.report(course_id=999_999)


async def test_course_details_lessons_and_quizzes_can_be_edited(crm) -> None:
    course = await make_course(crm, published=False)
    changed = await crm.courses.update_course(course_id=course.id, title="Tea 102", language="ZH",
                                              description="More tea", published=True)
    assert (changed.key, changed.title, changed.language, changed.description, changed.published) == (
        "basics", "Tea 102", "zh", "More tea", True)
    with pytest.raises(ValueError, match="title"):
        await crm.courses.update_course(course_id=course.id, title="", language="en", description="", published=True)

    added = await crm.courses.add_lesson(course_id=course.id, title="Storage", body="Keep it *dry*",
                                         image_url="https://img.example/jar.png")
    assert added.position == 4
    with pytest.raises(ValueError, match="image URL"):
        await crm.courses.add_lesson(course_id=course.id, title="Bad", image_url="javascript:alert(1)")
    edited = await crm.courses.update_lesson(course_id=course.id, lesson_id=added.id, title="Storing tea",
                                             body="Cool and dark", link_url="https://example.com/jars")
    assert (edited.title, edited.body, edited.image_url, edited.link_url) == (
        "Storing tea", "Cool and dark", None, "https://example.com/jars")
    q = await crm.courses.add_question(course_id=course.id, lesson_id=added.id, prompt="Where?",
                                       options=["Fridge", "Cupboard"], correct=1, explanation="Dry and dark.")
    q2 = await crm.courses.add_question(course_id=course.id, lesson_id=added.id, prompt="How long?",
                                        options=["A year", "Ten years"], correct=0)
    await crm.courses.move_question(course_id=course.id, lesson_id=added.id, question_id=q2.id, offset=-1)
    with pytest.raises(ValueError, match="correct option"):
        await crm.courses.update_question(course_id=course.id, lesson_id=added.id, question_id=q.id, prompt="?",
                                          options=["a", "b"], correct=2)
    await crm.courses.update_question(course_id=course.id, lesson_id=added.id, question_id=q.id, prompt="Where to?",
                                      options=["Fridge", "Cupboard", "Car"], correct=1)
    await crm.courses.move_lesson(course_id=course.id, lesson_id=added.id, offset=-1)
    with pytest.raises(ValueError, match="first"):
        await crm.courses.move_lesson(course_id=course.id, lesson_id=course.lessons[0].id, offset=-1)
    await crm.courses.delete_lesson(course_id=course.id, lesson_id=course.lessons[1].id)  # Leaf, with its quiz
    await crm.courses.delete_question(course_id=course.id, lesson_id=added.id, question_id=q2.id)

    now = await crm.courses.get_course(course_id=course.id)
    assert [(lesson.position, lesson.title) for lesson in now.lessons] == [(1, "Water"), (2, "Storing tea"),
                                                                           (3, "Gongfu")]
    assert [(x.position, x.prompt, x.options) for x in now.lessons[1].quiz] == [
        (1, "Where to?", ("Fridge", "Cupboard", "Car"))]
    assert await count(crm, m.QuizQuestion) == 2  # Water's and Storing tea's
    with pytest.raises(NotFound):  # another course's lesson
        other = await make_course(crm, key="other")
        await crm.courses.update_lesson(course_id=course.id, lesson_id=other.lessons[0].id, title="x")


async def test_what_learners_reached_cannot_move_or_go_and_answered_questions_keep_their_scoring(crm) -> None:
    course, ann = await make_course(crm), await customer(crm)
    water, leaf, gongfu = course.lessons
    await finish_first_lesson(crm, course, ann)  # Ann studies lesson 2 now
    with pytest.raises(ConflictError, match="1 learner reached"):
        await crm.courses.delete_lesson(course_id=course.id, lesson_id=water.id)
    with pytest.raises(ConflictError):
        await crm.courses.delete_lesson(course_id=course.id, lesson_id=leaf.id)  # she is on it
    with pytest.raises(ConflictError):
        await crm.courses.move_lesson(course_id=course.id, lesson_id=gongfu.id, offset=-1)  # would swap with hers
    question = water.quiz[0]
    with pytest.raises(ConflictError, match="answered"):
        await crm.courses.update_question(course_id=course.id, lesson_id=water.id, question_id=question.id,
                                          prompt=question.prompt, options=list(question.options), correct=0)
    with pytest.raises(ConflictError, match="answered"):
        await crm.courses.delete_question(course_id=course.id, lesson_id=water.id, question_id=question.id)
    await crm.courses.update_question(course_id=course.id, lesson_id=water.id, question_id=question.id,
                                      prompt="Water for green tea?", options=list(question.options), correct=1,
                                      explanation="Cooler water, sweeter cup.")
    extra = await crm.courses.add_lesson(course_id=course.id, title="Storage")
    await crm.courses.move_lesson(course_id=course.id, lesson_id=extra.id, offset=-1)  # ahead of everyone: fine
    await crm.courses.delete_lesson(course_id=course.id, lesson_id=gongfu.id)
    progress = (await crm.courses.progress(customer_id=ann.id))[0]
    assert (progress.current_position, progress.lessons_done, progress.lessons_total, progress.quiz_correct) == (
        2, 1, 3, 1)
    with pytest.raises(ValueError, match="at least one lesson"):
        lone = await make_course(crm, key="lone", lessons=[lesson("Only")])
        await crm.courses.delete_lesson(course_id=lone.id, lesson_id=lone.lessons[0].id)
