"""Courses: the list with each course's completion report, a course's details and lessons (add, edit, move, delete),
a lesson's preview (Markdown rendered safely) and its quiz questions (add, edit, move, delete).

Learners' progress stays consistent: the store refuses to move or delete a lesson someone has reached and to
re-score a question someone has answered, and the page says why. Every page needs COURSES_MANAGE."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from console.context import Console, ConsoleDep
from console.markdown import to_safe_html
from console.pages import flash_page, found, not_found
from console.permissions import Permission, require
from console.security import SignedIn
from console.web import redirect
from crm_store.dto import CourseView, LessonView, QuizQuestionView
from crm_store.errors import DomainError, NotFound

router = APIRouter(prefix="/courses")

Manager = Annotated[SignedIn, require(Permission.COURSES_MANAGE)]
FormStr = Annotated[str, Form()]
Id = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

LANGUAGES = {"en": "English", "zh": "Chinese (中文)"}
NOTICES = {
    "created": "Course created. Add its lessons and quizzes, then publish it.",
    "updated": "Changes saved.",
    "lesson-added": "Lesson added at the end.",
    "lesson-saved": "Lesson saved.",
    "lesson-deleted": "Lesson deleted; the ones after it moved up.",
    "moved": "Order changed.",
    "question-added": "Question added.",
    "question-saved": "Question saved.",
    "question-deleted": "Question deleted.",
}


def _page(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("typed", {})  # what was typed in a form that failed, by form
    return flash_page(request, template, notices=NOTICES, status_code=status_code, languages=LANGUAGES, **context)


def _not_found(request: Request, what: str = "course") -> Response:
    return not_found(request, what)


async def _course(console: Console, course_id: int) -> CourseView | None:
    return await found(console.crm.courses.get_course(course_id=course_id))


async def _change(request: Request, change: Callable[[], Awaitable[Any]], *, missing: str, done: str,
                  failed: Callable[[str], Awaitable[Response]]) -> Response:
    """Make a change and go to `done`; a record that is not there gives the 404 page, a refusal `failed(why)`."""
    try:
        await change()
    except NotFound:
        return _not_found(request, missing)
    except (ValueError, DomainError) as exc:
        return await failed(str(exc))
    return redirect(done)


@router.get("")
async def list_courses(request: Request, console: ConsoleDep, _: Manager) -> Response:
    return _page(request, "courses/list.html", summaries=await console.crm.courses.overview())


# --- the course -------------------------------------------------------------------------------------------------


@dataclass
class CourseForm:
    key: str = ""
    title: str = ""
    language: str = "en"
    description: str = ""
    published: bool = False
    first_lesson: str = ""  # a new course starts with one lesson
    first_body: str = ""

    @classmethod
    def of(cls, course: CourseView) -> CourseForm:
        return cls(course.key, course.title, course.language, course.description, course.published)


def _course_form_page(request: Request, *, form: CourseForm, course: CourseView | None = None,
                      status_code: int = 200, error: str | None = None) -> Response:
    return _page(request, "courses/form.html", status_code=status_code, form=form, course=course, error=error)


@router.get("/new")
async def new_course(request: Request, _: Manager) -> Response:
    return _course_form_page(request, form=CourseForm())


@router.post("/new")
async def create_course(request: Request, console: ConsoleDep, _: Manager, key: FormStr = "", title: FormStr = "",
                        language: FormStr = "en", description: FormStr = "", published: FormStr = "",
                        first_lesson: FormStr = "", first_body: FormStr = "") -> Response:
    form = CourseForm(key.strip(), title, language, description, published == "yes", first_lesson, first_body)
    try:
        course = await console.crm.courses.create_course(
            key=form.key, title=form.title, language=form.language if form.language in LANGUAGES else "",
            description=form.description, published=form.published,
            lessons=[{"title": form.first_lesson, "body": form.first_body}],
        )
    except (ValueError, DomainError) as exc:
        return _course_form_page(request, form=form, status_code=400, error=str(exc))
    return redirect(f"/courses/{course.id}?notice=created")


async def _course_page(request: Request, console: Console, course_id: int, *, status_code: int = 200,
                       error: str | None = None, typed: dict[str, Any] | None = None) -> Response:
    if (course := await _course(console, course_id)) is None:
        return _not_found(request)
    report = await console.crm.courses.report(course_id=course_id)
    return _page(request, "courses/detail.html", status_code=status_code, error=error, course=course,
                 report=report, typed=typed or {})


@router.get("/{course_id}")
async def show_course(request: Request, console: ConsoleDep, _: Manager, course_id: Id) -> Response:
    return await _course_page(request, console, course_id)


@router.get("/{course_id}/edit")
async def edit_course(request: Request, console: ConsoleDep, _: Manager, course_id: Id) -> Response:
    if (course := await _course(console, course_id)) is None:
        return _not_found(request)
    return _course_form_page(request, form=CourseForm.of(course), course=course)


@router.post("/{course_id}/edit")
async def update_course(request: Request, console: ConsoleDep, _: Manager, course_id: Id, title: FormStr = "",
                        language: FormStr = "en", description: FormStr = "", published: FormStr = "") -> Response:
    if (course := await _course(console, course_id)) is None:
        return _not_found(request)
    form = CourseForm(course.key, title, language, description, published == "yes")
    try:
        await console.crm.courses.update_course(
            course_id=course_id, title=title, language=language if language in LANGUAGES else "",
            description=description, published=form.published)
    except NotFound:
        return _not_found(request)
    except (ValueError, DomainError) as exc:
        return _course_form_page(request, form=form, course=course, status_code=400, error=str(exc))
    return redirect(f"/courses/{course_id}?notice=updated")


# --- lessons ----------------------------------------------------------------------------------------------------


@dataclass
class LessonForm:
    title: str = ""
    body: str = ""
    image_url: str = ""
    link_url: str = ""

    @classmethod
    def of(cls, lesson: LessonView) -> LessonForm:
        return cls(lesson.title, lesson.body, lesson.image_url or "", lesson.link_url or "")


@router.post("/{course_id}/lessons")
async def add_lesson(request: Request, console: ConsoleDep, _: Manager, course_id: Id, title: FormStr = "",
                     body: FormStr = "", image_url: FormStr = "", link_url: FormStr = "") -> Response:
    form = LessonForm(title, body, image_url, link_url)
    try:
        lesson = await console.crm.courses.add_lesson(course_id=course_id, **asdict(form))
    except NotFound:
        return _not_found(request)
    except (ValueError, DomainError) as exc:
        return await _course_page(request, console, course_id, status_code=400, error=str(exc),
                                  typed={"lesson": form})
    return redirect(f"/courses/{course_id}/lessons/{lesson.id}?notice=lesson-added")


async def _lesson_page(request: Request, console: Console, course_id: int, lesson_id: int, *,
                       status_code: int = 200, error: str | None = None,
                       typed: dict[str, Any] | None = None) -> Response:
    if (course := await _course(console, course_id)) is None:
        return _not_found(request)
    lesson = next((x for x in course.lessons if x.id == lesson_id), None)
    if lesson is None:
        return _not_found(request, "lesson in this course")
    report = await console.crm.courses.report(course_id=course_id)
    return _page(request, "courses/lesson.html", status_code=status_code, error=error, course=course, lesson=lesson,
                 report=report, body_html=to_safe_html(lesson.body), typed=typed or {},
                 form=(typed or {}).get("lesson") or LessonForm.of(lesson))


@router.get("/{course_id}/lessons/{lesson_id}")
async def show_lesson(request: Request, console: ConsoleDep, _: Manager, course_id: Id, lesson_id: Id) -> Response:
    return await _lesson_page(request, console, course_id, lesson_id)


@router.post("/{course_id}/lessons/{lesson_id}/edit")
async def update_lesson(request: Request, console: ConsoleDep, _: Manager, course_id: Id, lesson_id: Id,
                        title: FormStr = "", body: FormStr = "", image_url: FormStr = "",
                        link_url: FormStr = "") -> Response:
    form = LessonForm(title, body, image_url, link_url)
    return await _change(
        request, lambda: console.crm.courses.update_lesson(course_id=course_id, lesson_id=lesson_id, **asdict(form)),
        missing="lesson in this course", done=f"/courses/{course_id}/lessons/{lesson_id}?notice=lesson-saved",
        failed=lambda why: _lesson_page(request, console, course_id, lesson_id, status_code=400, error=why,
                                        typed={"lesson": form}))


def _course_refused(request: Request, console: Console, course_id: int) -> Callable[[str], Awaitable[Response]]:
    return lambda why: _course_page(request, console, course_id, status_code=409, error=why)


@router.post("/{course_id}/lessons/{lesson_id}/delete")
async def delete_lesson(request: Request, console: ConsoleDep, _: Manager, course_id: Id, lesson_id: Id) -> Response:
    return await _change(
        request, lambda: console.crm.courses.delete_lesson(course_id=course_id, lesson_id=lesson_id),
        missing="lesson in this course", done=f"/courses/{course_id}?notice=lesson-deleted",
        failed=_course_refused(request, console, course_id))


def _offset(direction: str) -> int:
    return {"up": -1, "down": 1}.get(direction, 0)


@router.post("/{course_id}/lessons/{lesson_id}/move")
async def move_lesson(request: Request, console: ConsoleDep, _: Manager, course_id: Id, lesson_id: Id,
                      direction: FormStr = "") -> Response:
    return await _change(
        request, lambda: console.crm.courses.move_lesson(course_id=course_id, lesson_id=lesson_id,
                                                         offset=_offset(direction)),
        missing="lesson in this course", done=f"/courses/{course_id}?notice=moved#lessons",
        failed=_course_refused(request, console, course_id))


# --- quiz questions ---------------------------------------------------------------------------------------------


@dataclass
class QuestionForm:
    prompt: str = ""
    options: str = ""  # one per line
    correct: str = "1"  # the number of the right line, from 1
    explanation: str = ""

    @classmethod
    def of(cls, q: QuizQuestionView) -> QuestionForm:
        return cls(q.prompt, "\n".join(q.options), str(q.correct_option + 1), q.explanation)

    def fields(self) -> dict[str, Any]:
        options = [line.strip() for line in self.options.splitlines() if line.strip()]
        try:
            correct = int(self.correct) - 1
        except ValueError:
            raise ValueError("The correct option is the number of its line (1 for the first).") from None
        if not 0 <= correct < max(len(options), 1):
            raise ValueError(f"The correct option is a line number from 1 to {max(len(options), 1)}.")
        return {"prompt": self.prompt, "options": options, "correct": correct, "explanation": self.explanation}


def _lesson_refused(request: Request, console: Console, course_id: int, lesson_id: int, *, status_code: int = 409,
                    typed: dict[Any, Any] | None = None) -> Callable[[str], Awaitable[Response]]:
    return lambda why: _lesson_page(request, console, course_id, lesson_id, status_code=status_code, error=why,
                                    typed=typed)


@router.post("/{course_id}/lessons/{lesson_id}/questions")
async def add_question(request: Request, console: ConsoleDep, _: Manager, course_id: Id, lesson_id: Id,
                       prompt: FormStr = "", options: FormStr = "", correct: FormStr = "1",
                       explanation: FormStr = "") -> Response:
    form = QuestionForm(prompt, options, correct, explanation)
    return await _change(
        request, lambda: console.crm.courses.add_question(course_id=course_id, lesson_id=lesson_id, **form.fields()),
        missing="lesson in this course", done=f"/courses/{course_id}/lessons/{lesson_id}?notice=question-added#quiz",
        failed=_lesson_refused(request, console, course_id, lesson_id, status_code=400, typed={"new": form}))


@router.post("/{course_id}/lessons/{lesson_id}/questions/{question_id}/edit")
async def update_question(request: Request, console: ConsoleDep, _: Manager, course_id: Id, lesson_id: Id,
                          question_id: Id, prompt: FormStr = "", options: FormStr = "", correct: FormStr = "1",
                          explanation: FormStr = "") -> Response:
    form = QuestionForm(prompt, options, correct, explanation)
    return await _change(
        request, lambda: console.crm.courses.update_question(course_id=course_id, lesson_id=lesson_id,
                                                             question_id=question_id, **form.fields()),
        missing="question in this lesson", done=f"/courses/{course_id}/lessons/{lesson_id}?notice=question-saved#quiz",
        failed=_lesson_refused(request, console, course_id, lesson_id, status_code=400, typed={question_id: form}))


@router.post("/{course_id}/lessons/{lesson_id}/questions/{question_id}/delete")
async def delete_question(request: Request, console: ConsoleDep, _: Manager, course_id: Id, lesson_id: Id,
                          question_id: Id) -> Response:
    return await _change(
        request, lambda: console.crm.courses.delete_question(course_id=course_id, lesson_id=lesson_id,
                                                             question_id=question_id),
        missing="question in this lesson",
        done=f"/courses/{course_id}/lessons/{lesson_id}?notice=question-deleted#quiz",
        failed=_lesson_refused(request, console, course_id, lesson_id))


@router.post("/{course_id}/lessons/{lesson_id}/questions/{question_id}/move")
async def move_question(request: Request, console: ConsoleDep, _: Manager, course_id: Id, lesson_id: Id,
                        question_id: Id, direction: FormStr = "") -> Response:
    return await _change(
        request, lambda: console.crm.courses.move_question(course_id=course_id, lesson_id=lesson_id,
                                                           question_id=question_id, offset=_offset(direction)),
        missing="question in this lesson", done=f"/courses/{course_id}/lessons/{lesson_id}?notice=moved#quiz",
        failed=_lesson_refused(request, console, course_id, lesson_id))
