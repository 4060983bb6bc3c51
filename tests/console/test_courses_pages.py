"""Courses in the console: create a course, edit its details, add, edit, move and delete lessons and quiz
questions, preview a lesson (Markdown rendered inert), the completion report, refusals that keep learners'
progress consistent shown in the page; only supervisors and admins get in."""

from __future__ import annotations

import re

from tests.console.conftest import session_for
from tests.console.pages import flash_error, table_rows

EVIL = "<img src=x onerror=alert(1)>"


async def made_course(client, csrf: str) -> int:  # type: ignore[no-untyped-def]
    response = await client.post("/courses/new", data={
        "csrf_token": csrf, "key": "tea-basics", "title": "Tea basics", "language": "zh", "description": "Start here",
        "first_lesson": "Water", "first_body": "Use **80 °C** water. " + EVIL})
    assert response.status_code == 303, response.text[:1000]
    match = re.fullmatch(r"/courses/(\d+)\?notice=created", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


async def test_a_course_is_built_lesson_by_lesson_with_its_quiz(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.supervisor, client)
    course_id = await made_course(client, csrf)
    course = await crm.courses.get_course(course_id=course_id)
    assert (course.title, course.language, course.published, [x.title for x in course.lessons]) == (
        "Tea basics", "zh", False, ["Water"])

    for title in ("Leaf", "Storage"):
        added = await client.post(f"/courses/{course_id}/lessons", data={
            "csrf_token": csrf, "title": title, "body": f"About *{title}*", "image_url": "https://img.example/x.png"})
        assert added.status_code == 303 and "notice=lesson-added" in added.headers["location"]
    storage = (await crm.courses.get_course(course_id=course_id)).lessons[2]
    moved = await client.post(f"/courses/{course_id}/lessons/{storage.id}/move", data={"csrf_token": csrf,
                                                                                      "direction": "up"})
    assert moved.status_code == 303
    page = (await client.get(f"/courses/{course_id}")).text
    assert [row[1] for row in table_rows(page, "lessons")] == ["Water", "Storage", "Leaf"]

    water = course.lessons[0]
    lesson_url = f"/courses/{course_id}/lessons/{water.id}"
    for prompt, options, correct in (("Green tea water?", "100 °C\n80 °C", "2"), ("Cup size?", "Small\nBig", "1")):
        response = await client.post(f"{lesson_url}/questions", data={
            "csrf_token": csrf, "prompt": prompt, "options": options, "correct": correct, "explanation": "Why " + EVIL})
        assert response.status_code == 303, response.text[:500]
    quiz = (await crm.courses.get_course(course_id=course_id)).lessons[0].quiz
    assert [(q.prompt, q.options, q.correct_option) for q in quiz] == [
        ("Green tea water?", ("100 °C", "80 °C"), 1), ("Cup size?", ("Small", "Big"), 0)]
    await client.post(f"{lesson_url}/questions/{quiz[1].id}/move", data={"csrf_token": csrf, "direction": "up"})
    await client.post(f"{lesson_url}/questions/{quiz[1].id}/edit", data={
        "csrf_token": csrf, "prompt": "Cup size for two?", "options": "Small\nBig\nHuge", "correct": "2"})
    await client.post(f"{lesson_url}/questions/{quiz[0].id}/delete", data={"csrf_token": csrf})
    saved = await client.post(f"{lesson_url}/edit", data={"csrf_token": csrf, "title": "Water first",
                                                          "body": "# Heat\n\n[chart](https://example.com/c) " + EVIL,
                                                          "link_url": "https://example.com/more"})
    assert saved.status_code == 303
    quiz = (await crm.courses.get_course(course_id=course_id)).lessons[0].quiz
    assert [(q.position, q.prompt, q.options, q.correct_option) for q in quiz] == [
        (1, "Cup size for two?", ("Small", "Big", "Huge"), 1)]

    preview = (await client.get(lesson_url)).text
    assert "<h1>Heat</h1>" in preview and '<a href="https://example.com/c">chart</a>' in preview  # Markdown
    assert EVIL not in preview and "&lt;img src=x onerror=alert(1)&gt;" in preview  # raw HTML stays text
    assert 'href="https://example.com/more"' in preview and "Big ✓" in preview

    details = await client.post(f"/courses/{course_id}/edit", data={
        "csrf_token": csrf, "title": "Tea basics II", "language": "en", "description": "Next", "published": "yes"})
    assert details.status_code == 303
    changed = await crm.courses.get_course(course_id=course_id)
    assert (changed.title, changed.language, changed.published, changed.key) == ("Tea basics II", "en", True,
                                                                                 "tea-basics")
    leaf = changed.lessons[2]
    assert (await client.post(f"/courses/{course_id}/lessons/{leaf.id}/delete",
                              data={"csrf_token": csrf})).status_code == 303
    assert [x.title for x in (await crm.courses.get_course(course_id=course_id)).lessons] == ["Water first", "Storage"]


async def test_errors_and_refusals_are_shown_in_the_page(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    csrf = await session_for(crm, staff.admin, client)
    bad = await client.post("/courses/new", data={"csrf_token": csrf, "key": "k", "title": "Typed",
                                                  "first_lesson": ""})
    assert bad.status_code == 400 and "Lesson 1 needs a title" in flash_error(bad.text) and 'value="Typed"' in bad.text
    course_id = await made_course(client, csrf)
    taken = await client.post("/courses/new", data={"csrf_token": csrf, "key": "tea-basics", "title": "Again",
                                                    "first_lesson": "One"})
    assert taken.status_code == 400 and "already exists" in flash_error(taken.text)
    url = await client.post(f"/courses/{course_id}/lessons", data={"csrf_token": csrf, "title": "Typed lesson",
                                                                   "image_url": "javascript:alert(1)"})
    assert url.status_code == 400 and "must start with https://" in flash_error(url.text)
    assert 'value="Typed lesson"' in url.text
    water = (await crm.courses.get_course(course_id=course_id)).lessons[0]
    lesson_url = f"/courses/{course_id}/lessons/{water.id}"
    for data, message in (({"prompt": "?", "options": "only", "correct": "1"}, "at least two"),
                          ({"prompt": "?", "options": "a\nb", "correct": "3"}, "from 1 to 2"),
                          ({"prompt": "?", "options": "a\nb", "correct": "first"}, "number of its line"),
                          ({"prompt": "", "options": "a\nb", "correct": "1"}, "needs a prompt")):
        response = await client.post(f"{lesson_url}/questions", data={"csrf_token": csrf, **data})
        assert response.status_code == 400 and message in flash_error(response.text), (data, response.text[:300])
    only = await client.post(f"{lesson_url}/delete", data={"csrf_token": csrf})
    assert only.status_code == 409 and "at least one lesson" in flash_error(only.text)
    first = await client.post(f"{lesson_url}/move", data={"csrf_token": csrf, "direction": "up"})
    assert first.status_code == 409 and "already the first" in flash_error(first.text)
    details = await client.post(f"/courses/{course_id}/edit", data={"csrf_token": csrf, "title": " "})
    assert details.status_code == 400 and "needs a title" in flash_error(details.text)
    assert (await client.get(f"/courses/{course_id}/lessons/999999")).status_code == 404


async def test_the_report_and_what_learners_reached_stays_put(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    course = await crm.courses.create_course(key="brew", title="Brew", language="en", lessons=[
        {"title": "One", "quiz": [{"prompt": "Hot?", "options": ["Yes", "No"], "correct": 0}]}, {"title": "Two"}])
    ann = await crm.customers.create(name="Ann", email="ann@example.com")
    bob = await crm.customers.create(name="Bob", email="bob@example.com")
    for who, option in ((ann, 0), (bob, 1)):
        e = await crm.courses.enroll(customer_id=who.id, course_id=course.id)
        ids = {"enrollment_id": e.id, "customer_id": who.id}
        await crm.courses.answer_quiz(**ids, question_id=course.lessons[0].quiz[0].id, option=option)
        await crm.courses.complete_lesson(**ids, lesson_id=course.lessons[0].id)
        if who is ann:
            await crm.courses.complete_lesson(**ids, lesson_id=course.lessons[1].id)
    csrf = await session_for(crm, staff.supervisor, client)
    listed = table_rows((await client.get("/courses")).text, "courses")
    assert listed == [["Brew brew", "en", "2", "2", "1 (50%)", "50%", "published"]]

    one = course.lessons[0]
    refused = await client.post(f"/courses/{course.id}/lessons/{one.id}/delete", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "2 learners reached this lesson" in flash_error(refused.text)
    rescored = await client.post(f"/courses/{course.id}/lessons/{one.id}/questions/{one.quiz[0].id}/edit", data={
        "csrf_token": csrf, "prompt": "Hot water?", "options": "Yes\nNo", "correct": "2"})
    assert rescored.status_code == 400 and "2 learners answered" in flash_error(rescored.text)
    assert 'value="2"' in rescored.text  # the typed answer stays in its form
    reworded = await client.post(f"/courses/{course.id}/lessons/{one.id}/questions/{one.quiz[0].id}/edit", data={
        "csrf_token": csrf, "prompt": "Hot water?", "options": "Yes\nNo", "correct": "1"})
    assert reworded.status_code == 303
    assert (await crm.courses.report(course_id=course.id)).quiz_correct == 1


async def test_only_supervisors_and_admins_open_the_course_pages(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    course = await crm.courses.create_course(key="brew", title="Brew", language="en", lessons=[{"title": "One"}])
    lesson_id = course.lessons[0].id
    pages = ["/courses", "/courses/new", f"/courses/{course.id}", f"/courses/{course.id}/edit",
             f"/courses/{course.id}/lessons/{lesson_id}"]
    for role, expected in (("agent", 403), ("supervisor", 200), ("admin", 200)):
        csrf = await session_for(crm, getattr(staff, role), client)
        for path in pages:
            assert (await client.get(path)).status_code == expected, (role, path)
        response = await client.post(f"/courses/{course.id}/lessons/{lesson_id}/edit",
                                     data={"csrf_token": csrf, "title": ""})
        assert response.status_code == (403 if role == "agent" else 400), role
    assert (await crm.courses.get_course(course_id=course.id)).lessons[0].title == "One"
