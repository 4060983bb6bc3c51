"""Training: a course catalogue, lessons delivered in order, quizzes with immediate feedback, progress saved so a
customer continues where they left off, and every step on the customer's timeline.

Rules: lessons are completed in order, a lesson's quiz is answered before the lesson is completed, the first
answer to a question stands, and enrolling or completing twice (a double tap) changes nothing. The unique
constraints (course + customer, enrolment + lesson, enrolment + question) settle races between two requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import (
    CourseStep,
    CourseSummary,
    CourseView,
    EnrollmentView,
    LessonResult,
    LessonView,
    QuizQuestionView,
    QuizResult,
    TimelineEntry,
)
from crm_store.enums import EnrollmentStatus
from crm_store.errors import ConflictError, InvalidTransition, NotFound
from crm_store.events import CourseCompleted, CourseStarted, LessonCompleted
from crm_store.services.base import Service
from crm_store.services.timeline import timeline_source

# The same refusal whether the enrolment does not exist or is someone else's: a forged id learns nothing.
NO_ENROLLMENT = "No such course enrolment."
MAX_TITLE = 200
MAX_URL = 500


@dataclass(frozen=True)
class _QuestionPlan:
    prompt: str
    options: tuple[str, ...]
    correct: int
    explanation: str


@dataclass(frozen=True)
class _LessonPlan:
    title: str
    body: str
    image_url: str | None
    link_url: str | None
    quiz: tuple[_QuestionPlan, ...]


def _plan(key: str, title: str, lessons: Sequence[Mapping[str, Any]]) -> list[_LessonPlan]:
    """Check a course before anything is written; the messages say which lesson and question is wrong."""
    if not key.strip():
        raise ValueError("A course needs a key.")
    _check_title(title)
    if not lessons:
        raise ValueError("A course needs at least one lesson.")
    return [_lesson_plan(f"Lesson {n}", lesson) for n, lesson in enumerate(lessons, start=1)]


def _check_title(title: str) -> None:
    if not title.strip():
        raise ValueError("A course needs a title.")
    if len(title.strip()) > MAX_TITLE:
        raise ValueError(f"The title is longer than {MAX_TITLE} characters.")


def _lesson_plan(where: str, lesson: Mapping[str, Any]) -> _LessonPlan:
    lesson_title = str(lesson.get("title") or "").strip()
    if not lesson_title:
        raise ValueError(f"{where} needs a title.")
    if len(lesson_title) > MAX_TITLE:
        raise ValueError(f"{where}: the title is longer than {MAX_TITLE} characters.")
    urls = []
    for name in ("image_url", "link_url"):
        url = str(lesson.get(name) or "").strip() or None
        if url is not None and (len(url) > MAX_URL or not url.lower().startswith(("https://", "http://"))):
            raise ValueError(f"{where}: the {name.replace('_url', '')} URL must start with https:// "
                             f"(at most {MAX_URL} characters).")
        urls.append(url)
    quiz = tuple(_question_plan(f"{where}, question {q}", question)
                 for q, question in enumerate(lesson.get("quiz") or (), start=1))
    return _LessonPlan(lesson_title, str(lesson.get("body") or ""), urls[0], urls[1], quiz)


def _question_plan(where: str, question: Mapping[str, Any]) -> _QuestionPlan:
    prompt = str(question.get("prompt") or "").strip()
    options = tuple(str(o).strip() for o in question.get("options") or ())
    correct = question.get("correct")
    if not prompt:
        raise ValueError(f"{where} needs a prompt.")
    if len(options) < 2 or not all(options):
        raise ValueError(f"{where} needs at least two non-empty options.")
    if not isinstance(correct, int) or isinstance(correct, bool) or not 0 <= correct < len(options):
        raise ValueError(f"{where}: the correct option must be an index from 0 to {len(options) - 1}.")
    return _QuestionPlan(prompt, options, correct, str(question.get("explanation") or ""))


class CourseService(Service):
    async def create_course(
        self, *, key: str, title: str, language: str, lessons: Sequence[Mapping[str, Any]], description: str = "",
        published: bool = True,
    ) -> CourseView:
        """A course with its lessons (in the order given) and their quizzes: `lessons` is a list of
        {"title", "body", "image_url", "link_url", "quiz": [{"prompt", "options", "correct", "explanation"}]}."""
        plans = _plan(key, title, lessons)
        try:
            async with self.uow() as uow:
                session = uow.session
                course = m.Course(key=key.strip(), language=language.strip().lower() or "en", title=title.strip(),
                                  description=description, published=published)
                session.add(course)
                await session.flush()
                for position, plan in enumerate(plans, start=1):
                    lesson = m.Lesson(course_id=course.id, position=position, title=plan.title, body=plan.body,
                                      image_url=plan.image_url, link_url=plan.link_url)
                    session.add(lesson)
                    await session.flush()
                    session.add_all(
                        m.QuizQuestion(lesson_id=lesson.id, position=n, prompt=q.prompt, options=list(q.options),
                                       correct_option=q.correct, explanation=q.explanation)
                        for n, q in enumerate(plan.quiz, start=1)
                    )
                await uow.commit()
                course_id = course.id
        except IntegrityError:
            raise ConflictError(f"A course with the key {key.strip()!r} already exists.") from None
        return await self.get_course(course_id=course_id)

    async def catalogue(self, *, language: str | None = None) -> list[CourseView]:
        """Published courses (without their lessons), those in `language` first."""
        async with self.uow() as uow:
            counts = (
                select(m.Lesson.course_id, func.count().label("n")).group_by(m.Lesson.course_id).subquery()
            )
            rows = (await uow.session.execute(
                select(m.Course, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.course_id == m.Course.id)
                .where(m.Course.published.is_(True))
                .order_by(m.Course.id)
            )).all()
            courses = [_course_view(c, n) for c, n in rows]
        return sorted(courses, key=lambda c: c.language != language) if language else courses

    async def get_course(self, *, course_id: int) -> CourseView:
        """A course with its lessons and their quizzes, in order."""
        async with self.uow() as uow:
            course = await uow.session.get(m.Course, course_id)
            if course is None:
                raise NotFound(f"No course {course_id}.")
            lessons = await _lessons(uow.session, course.id)
            return _course_view(course, len(lessons), tuple(lessons))

    async def find_course(self, *, key: str) -> CourseView | None:
        async with self.uow() as uow:
            course_id = await uow.session.scalar(select(m.Course.id).where(m.Course.key == key))
        return None if course_id is None else await self.get_course(course_id=course_id)

    async def enroll(self, *, customer_id: int, course_id: int) -> EnrollmentView:
        """Start a published course, or return the customer's enrolment in it (CourseStarted only the first time)."""
        if (found := await self._enrollment_in(customer_id, course_id)) is not None:
            return found
        try:
            async with self.uow() as uow:
                session = uow.session
                course = await session.get(m.Course, course_id)
                if course is None or not course.published:
                    raise NotFound("This course is not available.")
                if await session.get(m.Customer, customer_id) is None:
                    raise NotFound(f"No customer {customer_id}.")
                enrollment = m.Enrollment(course_id=course_id, customer_id=customer_id,
                                          status=EnrollmentStatus.IN_PROGRESS, current_position=1)
                session.add(enrollment)
                await session.flush()
                uow.emit(CourseStarted(enrollment_id=enrollment.id, course_id=course_id, customer_id=customer_id))
                view = await _enrollment_view(session, enrollment, created=True)
                await uow.commit()
                return view
        except IntegrityError:  # the same tap raced itself: the other request enrolled
            if (found := await self._enrollment_in(customer_id, course_id)) is not None:
                return found
            raise

    async def progress(self, *, customer_id: int) -> list[EnrollmentView]:
        """The customer's courses with lessons done out of the total, most recently studied first."""
        async with self.uow() as uow:
            rows = (await uow.session.execute(
                select(m.Enrollment).where(m.Enrollment.customer_id == customer_id)
                .order_by(m.Enrollment.last_activity_at.desc(), m.Enrollment.id.desc())
            )).scalars()
            return [await _enrollment_view(uow.session, e) for e in rows]

    async def current_step(self, *, enrollment_id: int, customer_id: int) -> CourseStep:
        """The lesson the customer is studying and its first unanswered quiz question."""
        async with self.uow() as uow:
            enrollment = await _owned(uow.session, enrollment_id, customer_id)
            return await _step(uow.session, enrollment)

    async def answer_quiz(
        self, *, enrollment_id: int, customer_id: int, question_id: int, option: int
    ) -> QuizResult:
        """Record the answer to a quiz question and say whether it is right; a question is answered once (a
        second answer, or a double tap, gets the first answer back)."""
        try:
            async with self.uow() as uow:
                session = uow.session
                enrollment = await _owned(session, enrollment_id, customer_id)
                question = await session.get(m.QuizQuestion, question_id)
                lesson = await session.get(m.Lesson, question.lesson_id) if question else None
                if question is None or lesson is None or lesson.course_id != enrollment.course_id:
                    raise NotFound("No such question in this course.")
                if (first := await _answer(session, enrollment_id, question_id)) is not None:
                    return _quiz_result(first, question, duplicate=True)
                if lesson.position > enrollment.current_position:
                    raise InvalidTransition("That lesson has not started yet.")
                if not 0 <= option < len(question.options):
                    raise ValueError("No such option.")
                answer = m.QuizAnswer(enrollment_id=enrollment_id, question_id=question_id, chosen_option=option,
                                      correct=option == question.correct_option)
                session.add(answer)
                await session.flush()
                enrollment.last_activity_at = utcnow()
                await uow.commit()
                return _quiz_result(answer, question, duplicate=False)
        except IntegrityError:  # a double tap: the other request's answer stands
            async with self.uow() as uow:
                first = await _answer(uow.session, enrollment_id, question_id)
                question = await uow.session.get(m.QuizQuestion, question_id)
                if first is None or question is None:
                    raise
                return _quiz_result(first, question, duplicate=True)

    async def complete_lesson(self, *, enrollment_id: int, customer_id: int, lesson_id: int) -> LessonResult:
        """Finish the current lesson (its quiz answered) and move to the next; after the last one the course is
        completed. Completing a lesson again changes nothing."""
        try:
            async with self.uow() as uow:
                session = uow.session
                enrollment = await _owned(session, enrollment_id, customer_id)
                lesson = await session.get(m.Lesson, lesson_id)
                if lesson is None or lesson.course_id != enrollment.course_id:
                    raise NotFound("No such lesson in this course.")
                if await _completed(session, enrollment_id, lesson_id):
                    return LessonResult(await _step(session, enrollment), duplicate=True, course_completed=False)
                if lesson.position != enrollment.current_position:
                    raise InvalidTransition(f"Lesson {enrollment.current_position} comes first.")
                if await _unanswered(session, enrollment_id, lesson_id):
                    raise InvalidTransition("Answer this lesson's quiz first.")
                session.add(m.LessonCompletion(enrollment_id=enrollment_id, lesson_id=lesson_id))
                await session.flush()
                total = await _lesson_count(session, enrollment.course_id)
                enrollment.current_position = lesson.position + 1
                enrollment.last_activity_at = utcnow()
                ids = {"enrollment_id": enrollment_id, "course_id": enrollment.course_id, "customer_id": customer_id}
                uow.emit(LessonCompleted(lesson_id=lesson_id, **ids))
                finished = lesson.position >= total
                if finished:
                    enrollment.status = EnrollmentStatus.COMPLETED
                    enrollment.completed_at = utcnow()
                    uow.emit(CourseCompleted(**ids))
                await session.flush()
                step = await _step(session, enrollment)
                await uow.commit()
                return LessonResult(step, duplicate=False, course_completed=finished)
        except IntegrityError:  # a double tap: the other request completed the lesson
            async with self.uow() as uow:
                if not await _completed(uow.session, enrollment_id, lesson_id):
                    raise
                step = await _step(uow.session, await _owned(uow.session, enrollment_id, customer_id))
                return LessonResult(step, duplicate=True, course_completed=False)

    # --- authoring (the console) -------------------------------------------------------------------------------
    # Learners' progress is kept by lesson position, and quiz answers are scored when given; so a lesson a learner
    # has reached can be edited but neither moved nor deleted, and an answered question keeps its options and its
    # correct answer. Lessons added later reach those in progress; a completed course stays completed.

    async def overview(self, *, course_id: int | None = None) -> list[CourseSummary]:
        """Every course (drafts too) with its completion report: enrolled, completed, quiz answers and how many
        were right (aggregate queries, one row per course)."""
        e, a = m.Enrollment, m.QuizAnswer
        lessons = select(m.Lesson.course_id, func.count().label("n")).group_by(m.Lesson.course_id).subquery()
        learners = select(
            e.course_id, func.count().label("enrolled"),
            func.sum(case((e.status == EnrollmentStatus.COMPLETED, 1), else_=0)).label("completed"),
            func.max(case((e.status == EnrollmentStatus.COMPLETED, None), else_=e.current_position)).label("at"),
        ).group_by(e.course_id).subquery()
        quiz = select(e.course_id, func.count(a.id).label("answers"),
                      func.sum(case((a.correct.is_(True), 1), else_=0)).label("correct")
                      ).join(a, a.enrollment_id == e.id).group_by(e.course_id).subquery()
        query = (select(m.Course, lessons.c.n, learners.c.enrolled, learners.c.completed, learners.c.at,
                        quiz.c.answers, quiz.c.correct)
                 .outerjoin(lessons, lessons.c.course_id == m.Course.id)
                 .outerjoin(learners, learners.c.course_id == m.Course.id)
                 .outerjoin(quiz, quiz.c.course_id == m.Course.id).order_by(m.Course.id))
        if course_id is not None:
            query = query.where(m.Course.id == course_id)
        async with self.uow() as uow:
            rows = (await uow.session.execute(query)).all()
        summaries = []
        for course, n, enrolled, completed, at, answers, correct in rows:
            # a completed learner has been through every lesson
            furthest = int(n or 0) if completed else int(at or 0)
            summaries.append(CourseSummary(_course_view(course, n or 0), int(enrolled or 0), int(completed or 0),
                                           int(answers or 0), int(correct or 0), furthest))
        return summaries

    async def report(self, *, course_id: int) -> CourseSummary:
        found = await self.overview(course_id=course_id)
        if not found:
            raise NotFound(f"No course {course_id}.")
        return found[0]

    async def update_course(
        self, *, course_id: int, title: str, language: str, description: str, published: bool,
    ) -> CourseView:
        """Change a course's title, language, description and whether customers see it (its key stays)."""
        _check_title(title)
        language = _checked_language(language)
        async with self.uow() as uow:
            course = await uow.session.get(m.Course, course_id)
            if course is None:
                raise NotFound(f"No course {course_id}.")
            course.title, course.language, course.description = title.strip(), language, description
            course.published = published
        return await self.get_course(course_id=course_id)

    async def add_lesson(self, *, course_id: int, title: str, body: str = "", image_url: str | None = None,
                         link_url: str | None = None) -> LessonView:
        """A lesson at the end of the course."""
        plan = _lesson_plan("The lesson", {"title": title, "body": body, "image_url": image_url,
                                           "link_url": link_url})
        async with self.uow() as uow:
            if await uow.session.get(m.Course, course_id) is None:
                raise NotFound(f"No course {course_id}.")
            lesson = m.Lesson(course_id=course_id, position=await _lesson_count(uow.session, course_id) + 1,
                              title=plan.title, body=plan.body, image_url=plan.image_url, link_url=plan.link_url)
            uow.session.add(lesson)
            await uow.session.flush()
            return LessonView.of(lesson)

    async def update_lesson(self, *, course_id: int, lesson_id: int, title: str, body: str = "",
                            image_url: str | None = None, link_url: str | None = None) -> LessonView:
        """Change a lesson's text, picture and link (its place and its quiz stay)."""
        plan = _lesson_plan("The lesson", {"title": title, "body": body, "image_url": image_url,
                                           "link_url": link_url})
        async with self.uow() as uow:
            lesson = await _lesson_of(uow.session, course_id, lesson_id)
            lesson.title, lesson.body, lesson.image_url, lesson.link_url = (plan.title, plan.body, plan.image_url,
                                                                            plan.link_url)
            await uow.session.flush()
            return LessonView.of(lesson)

    async def delete_lesson(self, *, course_id: int, lesson_id: int) -> None:
        """Delete a lesson no learner has reached (with its quiz); the lessons after it move up one place."""
        async with self.uow() as uow:
            session = uow.session
            lesson = await _lesson_of(session, course_id, lesson_id)
            if await _lesson_count(session, course_id) <= 1:
                raise ValueError("A course needs at least one lesson.")
            await _refuse_if_reached(session, course_id, lesson.position, "deleted")
            position = lesson.position
            await session.execute(delete(m.QuizQuestion).where(m.QuizQuestion.lesson_id == lesson.id))
            await session.delete(lesson)
            await session.flush()
            later = (await session.execute(
                select(m.Lesson).where(m.Lesson.course_id == course_id, m.Lesson.position > position)
                .order_by(m.Lesson.position)
            )).scalars().all()
            for following in later:  # one at a time, in order: (course, position) stays unique at every step
                following.position -= 1
                await session.flush()

    async def move_lesson(self, *, course_id: int, lesson_id: int, offset: int) -> None:
        """Swap a lesson with the one before (offset -1) or after (+1), when no learner has reached either."""
        async with self.uow() as uow:
            session = uow.session
            lesson = await _lesson_of(session, course_id, lesson_id)
            other = await _neighbour(session, lesson, m.Lesson.course_id == course_id, offset, "lesson")
            await _refuse_if_reached(session, course_id, min(lesson.position, other.position), "moved")
            await _swap(session, lesson, other)

    async def add_question(self, *, course_id: int, lesson_id: int, prompt: str, options: Sequence[str],
                           correct: int, explanation: str = "") -> QuizQuestionView:
        """A quiz question at the end of the lesson's quiz (learners on that lesson answer it before going on)."""
        plan = _question_plan("The question", {"prompt": prompt, "options": options, "correct": correct,
                                               "explanation": explanation})
        async with self.uow() as uow:
            lesson = await _lesson_of(uow.session, course_id, lesson_id)
            position = int(await uow.session.scalar(
                select(func.coalesce(func.max(m.QuizQuestion.position), 0)).where(m.QuizQuestion.lesson_id == lesson.id)
            ) or 0) + 1
            question = m.QuizQuestion(lesson_id=lesson.id, position=position, prompt=plan.prompt,
                                      options=list(plan.options), correct_option=plan.correct,
                                      explanation=plan.explanation)
            uow.session.add(question)
            await uow.session.flush()
            return QuizQuestionView.of(question)

    async def update_question(self, *, course_id: int, lesson_id: int, question_id: int, prompt: str,
                              options: Sequence[str], correct: int, explanation: str = "") -> QuizQuestionView:
        """Change a quiz question; once answered, only its prompt and explanation (answers were scored)."""
        plan = _question_plan("The question", {"prompt": prompt, "options": options, "correct": correct,
                                               "explanation": explanation})
        async with self.uow() as uow:
            question = await _question_of(uow.session, course_id, lesson_id, question_id)
            changes_scoring = (list(plan.options), plan.correct) != (list(question.options), question.correct_option)
            if changes_scoring and (answered := await _answers_to(uow.session, question.id)):
                raise ConflictError(f"{_learners(answered)} answered this question: its options and correct "
                                    "answer stay as they are (the prompt and explanation can change).")
            question.prompt, question.options, question.correct_option = plan.prompt, list(plan.options), plan.correct
            question.explanation = plan.explanation
            await uow.session.flush()
            return QuizQuestionView.of(question)

    async def delete_question(self, *, course_id: int, lesson_id: int, question_id: int) -> None:
        """Delete a quiz question nobody has answered; the ones after it move up."""
        async with self.uow() as uow:
            session = uow.session
            question = await _question_of(session, course_id, lesson_id, question_id)
            if answered := await _answers_to(session, question.id):
                raise ConflictError(f"{_learners(answered)} answered this question: deleting it would change "
                                    "their scores. Edit its prompt or explanation instead.")
            position = question.position
            await session.delete(question)
            await session.flush()
            later = (await session.execute(
                select(m.QuizQuestion).where(m.QuizQuestion.lesson_id == lesson_id, m.QuizQuestion.position > position)
                .order_by(m.QuizQuestion.position)
            )).scalars().all()
            for following in later:
                following.position -= 1
                await session.flush()

    async def move_question(self, *, course_id: int, lesson_id: int, question_id: int, offset: int) -> None:
        """Swap a quiz question with the one before (-1) or after (+1); answers stay with their question."""
        async with self.uow() as uow:
            question = await _question_of(uow.session, course_id, lesson_id, question_id)
            other = await _neighbour(uow.session, question, m.QuizQuestion.lesson_id == lesson_id, offset, "question")
            await _swap(uow.session, question, other)

    async def _enrollment_in(self, customer_id: int, course_id: int) -> EnrollmentView | None:
        async with self.uow() as uow:
            enrollment = (await uow.session.execute(
                select(m.Enrollment).where(m.Enrollment.customer_id == customer_id,
                                           m.Enrollment.course_id == course_id)
            )).scalar_one_or_none()
            return None if enrollment is None else await _enrollment_view(uow.session, enrollment)


def _course_view(course: m.Course, lesson_count: int, lessons: tuple[LessonView, ...] = ()) -> CourseView:
    return CourseView(course.id, course.key, course.language, course.title, course.description, course.published,
                      int(lesson_count), lessons)


def _checked_language(language: str) -> str:
    code = language.strip().lower()
    if not code or len(code) > 8 or not code.replace("-", "").isalpha():
        raise ValueError("The language is a code such as en or zh.")
    return code


def _learners(n: int) -> str:
    return f"{n} learner{'s' if n != 1 else ''}"


async def _lesson_of(session: AsyncSession, course_id: int, lesson_id: int) -> m.Lesson:
    lesson = await session.get(m.Lesson, lesson_id)
    if lesson is None or lesson.course_id != course_id:
        raise NotFound("No such lesson in this course.")
    return lesson


async def _question_of(session: AsyncSession, course_id: int, lesson_id: int, question_id: int) -> m.QuizQuestion:
    await _lesson_of(session, course_id, lesson_id)
    question = await session.get(m.QuizQuestion, question_id)
    if question is None or question.lesson_id != lesson_id:
        raise NotFound("No such question in this lesson.")
    return question


async def _answers_to(session: AsyncSession, question_id: int) -> int:
    return int(await session.scalar(select(func.count()).where(m.QuizAnswer.question_id == question_id)) or 0)


async def _refuse_if_reached(session: AsyncSession, course_id: int, position: int, done: str) -> None:
    """ConflictError when a learner has reached the lesson at `position` (or gone past it)."""
    reached = int(await session.scalar(select(func.count()).where(
        m.Enrollment.course_id == course_id,
        (m.Enrollment.current_position >= position) | (m.Enrollment.status == EnrollmentStatus.COMPLETED),
    )) or 0)
    if reached:
        raise ConflictError(f"{_learners(reached)} reached this lesson or went past it: it cannot be {done} "
                            "without changing their progress. Edit its text instead, or add a new lesson.")


async def _neighbour(session: AsyncSession, row: m.Lesson | m.QuizQuestion, same_parent: Any, offset: int,
                     what: str) -> Any:
    """The lesson (or question) just before (offset -1) or after (+1) `row`; ValueError when there is none."""
    if offset not in (-1, 1):
        raise ValueError(f"A {what} moves up or down one place.")
    model = type(row)
    other = (await session.execute(
        select(model).where(same_parent, model.position == row.position + offset)
    )).scalar_one_or_none()
    if other is None:
        raise ValueError(f"This {what} is already the {'first' if offset < 0 else 'last'}.")
    return other


async def _swap(session: AsyncSession, row: m.Lesson | m.QuizQuestion, other: m.Lesson | m.QuizQuestion) -> None:
    """Swap two positions through a free one, flushing each step: the (parent, position) pair stays unique."""
    first, second = row.position, other.position
    row.position = 0
    await session.flush()
    other.position = first
    await session.flush()
    row.position = second
    await session.flush()


def _quiz_result(answer: m.QuizAnswer, question: m.QuizQuestion, *, duplicate: bool) -> QuizResult:
    return QuizResult(answer.enrollment_id, answer.question_id, answer.chosen_option, answer.correct,
                      question.correct_option, question.options[question.correct_option], question.explanation,
                      duplicate)


async def _owned(session: AsyncSession, enrollment_id: int, customer_id: int) -> m.Enrollment:
    enrollment = await session.get(m.Enrollment, enrollment_id)
    if enrollment is None or enrollment.customer_id != customer_id:
        raise NotFound(NO_ENROLLMENT)
    return enrollment


async def _lessons(session: AsyncSession, course_id: int, *, position: int | None = None) -> list[LessonView]:
    """The course's lessons with their quizzes, in order (only the one at `position` when given)."""
    query = select(m.Lesson).where(m.Lesson.course_id == course_id).order_by(m.Lesson.position)
    if position is not None:
        query = query.where(m.Lesson.position == position)
    lessons = list((await session.execute(query)).scalars())
    questions = (await session.execute(
        select(m.QuizQuestion).where(m.QuizQuestion.lesson_id.in_([lesson.id for lesson in lessons]))
        .order_by(m.QuizQuestion.position)
    )).scalars() if lessons else []
    quiz: dict[int, list[QuizQuestionView]] = {lesson.id: [] for lesson in lessons}
    for q in questions:
        quiz[q.lesson_id].append(QuizQuestionView.of(q))
    return [LessonView.of(lesson, tuple(quiz[lesson.id])) for lesson in lessons]


async def _lesson_count(session: AsyncSession, course_id: int) -> int:
    return int(await session.scalar(select(func.count()).where(m.Lesson.course_id == course_id)) or 0)


async def _answer(session: AsyncSession, enrollment_id: int, question_id: int) -> m.QuizAnswer | None:
    return (await session.execute(
        select(m.QuizAnswer).where(m.QuizAnswer.enrollment_id == enrollment_id,
                                   m.QuizAnswer.question_id == question_id)
    )).scalar_one_or_none()


async def _completed(session: AsyncSession, enrollment_id: int, lesson_id: int) -> bool:
    return await session.scalar(
        select(m.LessonCompletion.id).where(m.LessonCompletion.enrollment_id == enrollment_id,
                                            m.LessonCompletion.lesson_id == lesson_id)
    ) is not None


async def _unanswered(session: AsyncSession, enrollment_id: int, lesson_id: int) -> int:
    answered = select(m.QuizAnswer.question_id).where(m.QuizAnswer.enrollment_id == enrollment_id)
    return int(await session.scalar(
        select(func.count()).where(m.QuizQuestion.lesson_id == lesson_id, m.QuizQuestion.id.not_in(answered))
    ) or 0)


async def _step(session: AsyncSession, enrollment: m.Enrollment) -> CourseStep:
    view = await _enrollment_view(session, enrollment)
    if view.completed:
        return CourseStep(view, None, None)
    lessons = await _lessons(session, enrollment.course_id, position=enrollment.current_position)
    if not lessons:
        return CourseStep(view, None, None)
    answered = set((await session.execute(
        select(m.QuizAnswer.question_id).where(m.QuizAnswer.enrollment_id == enrollment.id)
    )).scalars())
    question = next((q for q in lessons[0].quiz if q.id not in answered), None)
    return CourseStep(view, lessons[0], question)


async def _enrollment_view(session: AsyncSession, e: m.Enrollment, *, created: bool = False) -> EnrollmentView:
    course = await session.get_one(m.Course, e.course_id)
    lessons_done = await session.scalar(
        select(func.count()).where(m.LessonCompletion.enrollment_id == e.id)
    )
    quiz_total = await session.scalar(
        select(func.count()).select_from(m.QuizQuestion).join(m.Lesson, m.Lesson.id == m.QuizQuestion.lesson_id)
        .where(m.Lesson.course_id == e.course_id)
    )
    answered, correct = (await session.execute(
        select(func.count(), func.coalesce(func.sum(case((m.QuizAnswer.correct.is_(True), 1), else_=0)), 0))
        .where(m.QuizAnswer.enrollment_id == e.id)
    )).one()
    return EnrollmentView(
        id=e.id, course_id=e.course_id, customer_id=e.customer_id, course_key=course.key, course_title=course.title,
        course_language=course.language, status=str(e.status), current_position=e.current_position,
        lessons_done=int(lessons_done or 0), lessons_total=await _lesson_count(session, e.course_id),
        quiz_answered=int(answered), quiz_correct=int(correct), quiz_total=int(quiz_total or 0),
        started_at=e.started_at, last_activity_at=e.last_activity_at, completed_at=e.completed_at, created=created,
    )


async def merge_enrollments(session: AsyncSession, *, source_id: int, target_id: int) -> None:
    """When two customers merge (a chat linked to its CRM record): the source's enrolments move to the target;
    where both took the same course, the one further along stays and the other goes, with its answers."""
    rows = (await session.execute(
        select(m.Enrollment).where(m.Enrollment.customer_id.in_([source_id, target_id]))
    )).scalars()
    by_course: dict[int, list[m.Enrollment]] = {}
    for enrollment in rows:
        by_course.setdefault(enrollment.course_id, []).append(enrollment)
    for enrollments in by_course.values():
        keep = max(enrollments, key=lambda e: (e.status == EnrollmentStatus.COMPLETED, e.current_position,
                                               e.last_activity_at))
        for other in enrollments:
            if other is not keep:
                await session.delete(other)
        await session.flush()  # the other row is gone before the kept one takes the (course, customer) pair
        keep.customer_id = target_id
    await session.flush()


# --- the customer's timeline ------------------------------------------------------------------------------------


def _enrollments_of(customer_id: int) -> Any:
    return (select(m.Enrollment, m.Course.title).join(m.Course, m.Course.id == m.Enrollment.course_id)
            .where(m.Enrollment.customer_id == customer_id))


@timeline_source
async def _courses_started(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    rows = await session.execute(
        _enrollments_of(customer_id).order_by(m.Enrollment.started_at.desc(), m.Enrollment.id.desc()).limit(limit)
    )
    return [TimelineEntry(e.started_at, "course.started", f"Started the course {title}", e.id,
                          {"course_id": e.course_id, "enrollment_id": e.id}) for e, title in rows]


@timeline_source
async def _courses_completed(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    rows = (await session.execute(
        _enrollments_of(customer_id).where(m.Enrollment.completed_at.is_not(None))
        .order_by(m.Enrollment.completed_at.desc(), m.Enrollment.id.desc()).limit(limit)
    )).all()
    entries = []
    for e, title in rows:
        view = await _enrollment_view(session, e)
        entries.append(TimelineEntry(
            e.completed_at, "course.completed",  # type: ignore[arg-type]
            f"Completed the course {title} (quiz {view.quiz_correct}/{view.quiz_total})", e.id,
            {"course_id": e.course_id, "enrollment_id": e.id, "quiz_correct": view.quiz_correct,
             "quiz_total": view.quiz_total},
        ))
    return entries


def _newest_of_customer(query: Any, row: Any, at: Any, customer_id: int, limit: int) -> Any:
    """`query` over rows of an enrolment (`row`: LessonCompletion, QuizAnswer) of the customer, newest first."""
    return (query.join(m.Enrollment, m.Enrollment.id == row.enrollment_id)
            .where(m.Enrollment.customer_id == customer_id).order_by(at.desc(), row.id.desc()).limit(limit))


@timeline_source
async def _lessons_completed(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    done = m.LessonCompletion
    rows = await session.execute(_newest_of_customer(
        select(done, m.Lesson, m.Enrollment.course_id).join(m.Lesson, m.Lesson.id == done.lesson_id),
        done, done.completed_at, customer_id, limit,
    ))
    return [TimelineEntry(d.completed_at, "course.lesson_completed", f"Completed lesson {lesson.position}: "
                          f"{lesson.title}", d.id, {"course_id": course_id, "enrollment_id": d.enrollment_id,
                                                    "lesson_id": lesson.id, "position": lesson.position})
            for d, lesson, course_id in rows]


@timeline_source
async def _quiz_answers(session: AsyncSession, customer_id: int, limit: int) -> list[TimelineEntry]:
    answer = m.QuizAnswer
    rows = await session.execute(_newest_of_customer(
        select(answer, m.QuizQuestion).join(m.QuizQuestion, m.QuizQuestion.id == answer.question_id),
        answer, answer.created_at, customer_id, limit,
    ))
    return [TimelineEntry(a.created_at, "course.quiz_answered", f"Quiz {'✓' if a.correct else '✗'}: "
                          f"{q.prompt[:150]}", a.id, {"enrollment_id": a.enrollment_id, "question_id": q.id,
                                                      "chosen_option": a.chosen_option, "correct": a.correct})
            for a, q in rows]
