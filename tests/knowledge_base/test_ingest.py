"""Reading knowledge-base import files: CSV, JSON Lines and Markdown folders, with per-row errors by physical line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge_base.ingest import (
    MAX_ANSWER_CHARS,
    MAX_QUESTION_CHARS,
    PROGRESS_EVERY,
    IngestFileError,
    ParsedFile,
    read_articles,
)
from knowledge_base.records import ArticleDraft, RowError

# CI clones the repository with shared/ beside it; the benchmark is read from there, never copied in.
STACKFAQ = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "stackfaq" / "faqs.jsonl"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def lines_of(parsed: ParsedFile) -> list[int]:
    return [line for line, _ in parsed.drafts]


def errors_by_line(parsed: ParsedFile) -> dict[int, str]:
    return {error.line: error.reason for error in parsed.errors}


# --- CSV -------------------------------------------------------------------------------------------------------------


def test_csv_good_and_bad_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path / "faq.csv",
        "Question,ANSWER,Alt_Questions,Tags,Language,ID,Status,Notes\n"
        "  How do   I reset my password? ,Click **Forgot password**. ,Forgot password|  reset   login ,"
        '"account;login, security|account",en,pw-1,,internal note\n'
        "Where is my order?,,,,,ord-1,,\n"
        "How do I pay?,By card.,,,fr,pay-1,,\n"
        "Can I return shoes?,Within 30 days.,,,,ret-1,archived,\n"
        ",,,,,,,\n"
        "Do you ship abroad?,Yes to 40 countries.,,shipping,,ship-1,draft,\n",
    )
    parsed = read_articles(path)

    assert parsed.total == 5
    assert lines_of(parsed) == [2, 7]
    assert parsed.drafts[0][1] == ArticleDraft(
        question="How do I reset my password?",
        answer="Click **Forgot password**.",
        alt_questions=("Forgot password", "reset login"),
        tags=("account", "login", "security"),
        language="en",
        external_id="pw-1",
        status="published",
    )
    assert parsed.drafts[1][1].status == "draft"
    assert parsed.drafts[1][1].tags == ("shipping",)
    errors = errors_by_line(parsed)
    assert set(errors) == {3, 4, 5}
    assert "missing answer" in errors[3]
    assert "language" in errors[4] and "'fr'" in errors[4]
    assert "status" in errors[5] and "'archived'" in errors[5]
    assert all(error.source == "" for error in parsed.errors)


def test_csv_multiline_quoted_answer_keeps_later_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "faq.csv",
        "question,answer\n"
        'How do I cancel?,"Steps:\n\n1. Open **Orders**\n2. Click Cancel"\n'  # lines 2-5
        "Missing answer here,\n"  # line 6
        '"What are your\nopening hours?","9-18, Monday to Friday."\n'  # lines 7-8
        "Last one?,Yes.\n",  # line 9
    )
    parsed = read_articles(path)

    assert lines_of(parsed) == [2, 7, 9]
    assert parsed.drafts[0][1].answer == "Steps:\n\n1. Open **Orders**\n2. Click Cancel"
    assert parsed.drafts[1][1].question == "What are your opening hours?"
    assert parsed.errors == [RowError(line=6, reason="missing answer")]


def test_csv_with_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes('\ufeffquestion,answer,external_id\r\n\r\nHi?,"Hello\r\nthere"\r\n\r\nBye?,See you.\r\n'.encode())
    parsed = read_articles(path)

    assert lines_of(parsed) == [3, 6]
    assert parsed.drafts[0][1].answer == "Hello\nthere"
    assert parsed.drafts[1][1].external_id is None
    assert parsed.errors == []


def test_csv_external_id_column_and_duplicate_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path / "faq.csv",
        "question,answer,external_id\nA?,a,x-1\nB?,b,x-2\nC?,c,x-1\nD?,,x-3\nE?,e,x-3\n",
    )
    parsed = read_articles(path)

    assert [draft.external_id for _, draft in parsed.drafts] == ["x-1", "x-2", "x-3"]
    assert lines_of(parsed) == [2, 3, 6]  # line 5 was rejected, so its id does not block line 6
    assert parsed.errors == [
        RowError(line=4, reason="id x-1 already used on line 2"),
        RowError(line=5, reason="missing answer"),
    ]


def test_csv_unquoted_comma_is_reported_not_truncated(tmp_path: Path) -> None:
    path = write(tmp_path / "faq.csv", "question,answer\nHow?,Click here, then there\nTrailing comma?,Fine.,\n")
    parsed = read_articles(path)

    assert lines_of(parsed) == [3]
    assert list(errors_by_line(parsed)) == [2]
    assert "3 fields" in parsed.errors[0].reason and "quotes" in parsed.errors[0].reason


def test_csv_length_limits(tmp_path: Path) -> None:
    long_question = "q" * (MAX_QUESTION_CHARS + 1)
    long_answer = "a" * (MAX_ANSWER_CHARS + 1)
    path = write(
        tmp_path / "faq.csv",
        f"question,answer\n{long_question},ok\nfine?,{long_answer}\n"
        f"{'q' * MAX_QUESTION_CHARS},{'a' * MAX_ANSWER_CHARS}\n",
    )
    parsed = read_articles(path)

    assert lines_of(parsed) == [4]
    errors = errors_by_line(parsed)
    assert "question is 1,001 characters" in errors[2]
    assert "answer is 20,001 characters" in errors[3]


def test_csv_chinese_rows_detect_language(tmp_path: Path) -> None:
    path = write(
        tmp_path / "faq.csv",
        "question,answer,language\n"
        "我的积分还有多少？,在“我的账户”页面查看。,\n"
        "我的points怎么用,结账时抵扣。,\n"
        "Where is 上海 store?,Nanjing Road.,\n"
        "Shipping to Hong Kong?,是的。,ZH\n",
    )
    parsed = read_articles(path)

    assert [draft.language for _, draft in parsed.drafts] == ["zh", "zh", "en", "zh"]
    assert parsed.drafts[0][1].question == "我的积分还有多少？"
    assert parsed.errors == []


def test_csv_missing_required_column(tmp_path: Path) -> None:
    path = write(tmp_path / "faq.csv", "question,reply\nHi?,Hello\n")
    with pytest.raises(IngestFileError, match="answer"):
        read_articles(path)


def test_csv_empty_file(tmp_path: Path) -> None:
    with pytest.raises(IngestFileError, match="empty"):
        read_articles(write(tmp_path / "faq.csv", "\n\n"))


def test_csv_unterminated_quote_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "faq.csv", 'question,answer\nA?,a\nB?,"never closed\nC?,c\n')
    with pytest.raises(IngestFileError, match="line 3"):
        read_articles(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes("question,answer\nHi?,Hello\n退款?,可以\n".encode("gbk"))
    with pytest.raises(IngestFileError, match=r"UTF-8.*line 3"):
        read_articles(path)


# --- JSON Lines ------------------------------------------------------------------------------------------------------


def test_jsonl_good_and_bad_lines(tmp_path: Path) -> None:
    rows = [
        json.dumps(
            {
                "question": "How do I reset my password?",
                "answer": "Use the link.",
                "id": 17,
                "alt_questions": ["forgot password"],
                "tags": ["account"],
                "extra": True,
            }
        ),
        "",
        '{"question": "broken", "answer": ',
        json.dumps(["not", "an", "object"]),
        json.dumps({"question": "Where is my order?"}),
        json.dumps({"question": "Tags?", "answer": "Yes.", "alt_questions": "not a list"}),
        json.dumps({"question": "Tags as text?", "answer": "Yes.", "tags": "a|b, c", "id": "t-1"}),
        json.dumps({"question": "Bad tags?", "answer": "Yes.", "tags": 5}),
        json.dumps({"question": "Bad id?", "answer": "Yes.", "id": True}),
        json.dumps({"question": "积分怎么兑换？", "answer": "在App里兑换。"}, ensure_ascii=False),
        "   ",
    ]
    path = write(tmp_path / "faq.jsonl", "\n".join(rows) + "\n")
    parsed = read_articles(path)

    assert parsed.total == 9
    assert lines_of(parsed) == [1, 7, 10]
    first = parsed.drafts[0][1]
    assert first.external_id == "17"
    assert first.alt_questions == ("forgot password",)
    assert first.tags == ("account",)
    assert parsed.drafts[1][1].tags == ("a", "b", "c")
    assert parsed.drafts[2][1].language == "zh"
    errors = errors_by_line(parsed)
    assert set(errors) == {3, 4, 5, 6, 8, 9}
    assert "invalid JSON" in errors[3]
    assert "JSON object" in errors[4]
    assert "missing answer" in errors[5]
    assert "alt_questions must be a list of strings" in errors[6]
    assert "tags" in errors[8]
    assert "id must be" in errors[9]


def test_jsonl_stackfaq_shape_and_ndjson(tmp_path: Path) -> None:
    rows = [
        {"faq_id": "faq000", "question": "Strikethrough?", "answers": ["Use ~~tildes~~.", "Or <del>."]},
        {"faq_id": "faq001", "question": "No answers?", "answers": []},
        {"faq_id": "faq000", "question": "Again?", "answers": ["Duplicate id."]},
    ]
    path = write(tmp_path / "faq.ndjson", "".join(json.dumps(row) + "\n" for row in rows))
    parsed = read_articles(path)

    assert parsed.drafts == [
        (1, ArticleDraft(question="Strikethrough?", answer="Use ~~tildes~~.", language="en", external_id="faq000"))
    ]
    assert errors_by_line(parsed)[2].startswith("answers must be a non-empty list")
    assert errors_by_line(parsed)[3] == "id faq000 already used on line 1"


def test_real_stackfaq_file_loads_completely() -> None:
    assert STACKFAQ.is_file(), f"the StackFAQ benchmark is expected at {STACKFAQ} (shared/ beside the repository)"
    parsed = read_articles(STACKFAQ)

    assert len(parsed.drafts) == 125
    assert parsed.errors == []
    assert parsed.total == 125
    assert len({draft.external_id for _, draft in parsed.drafts}) == 125


# --- Markdown folder -------------------------------------------------------------------------------------------------


def test_markdown_folder(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    write(
        folder / "billing" / "refunds.md",
        "---\nquestion: How do I get a refund?\nid: ref-1\nalt_questions:\n  - money back\ntags: billing|refunds\n"
        "status: draft\n---\n\n# Refunds\n\nWithin **30 days**.\n",
    )
    write(folder / "account.md", "# How do I change   my email?\n\nOpen *Settings*.\n\n- step one\n")
    write(folder / "broken.md", "---\nquestion: [unclosed\n---\nBody.\n")
    write(folder / "no-question.md", "Just some text without a heading.\n")
    write(folder / "zh" / "points.md", "---\ntitle: 积分怎么兑换？\nlanguage: ''\n---\n在App里兑换。\n")
    write(folder / "notes.txt", "not an article")
    write(folder / ".obsidian" / "hidden.md", "# Hidden?\n\nShould not load.\n")
    parsed = read_articles(folder)

    # sorted by relative path: account, billing/refunds, broken, no-question, zh/points
    assert parsed.total == 5
    assert lines_of(parsed) == [1, 2, 5]
    account, refunds, points = (draft for _, draft in parsed.drafts)
    assert account.question == "How do I change my email?"
    assert account.answer == "Open *Settings*.\n\n- step one"
    assert refunds == ArticleDraft(
        question="How do I get a refund?",
        answer="# Refunds\n\nWithin **30 days**.",  # the heading stays: the front matter gave the question
        alt_questions=("money back",),
        tags=("billing", "refunds"),
        language="en",
        external_id="ref-1",
        status="draft",
    )
    assert points.question == "积分怎么兑换？"
    assert points.language == "zh"
    assert [(error.source, error.line) for error in parsed.errors] == [("broken.md", 1), ("no-question.md", 1)]
    assert "YAML" in parsed.errors[0].reason and "line 2" in parsed.errors[0].reason
    assert "no question" in parsed.errors[1].reason


def test_markdown_bad_files_are_reported_per_file(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    write(folder / "a.md", "---\nid: 7\n---\n# First\n\nAnswer.\n")
    write(folder / "b.md", "---\nid: 7\n---\n# Second\n\nAnswer.\n")
    write(folder / "c.md", "---\nquestion: Never closed?\n\nBody.\n")
    write(folder / "d.md", "# Only a heading\n")
    write(folder / "e.md", "---\n- a list\n- not a mapping\n---\n# E?\n\nE.\n")
    (folder / "f.md").write_bytes("# 退款？\n\n可以。\n".encode("gbk"))
    write(folder / "g.md", "---\nquestion: Alternatives?\nalt_questions: just one\n---\nBody.\n")
    write(folder / "h.md", "---\nquestion: yes\n---\nYAML reads an unquoted yes as true.\n")
    parsed = read_articles(folder)

    assert [(line, draft.external_id) for line, draft in parsed.drafts] == [(1, "7")]
    reasons = {error.source: error.reason for error in parsed.errors}
    assert reasons["b.md"] == "id 7 already used in a.md"
    assert "never closed" in reasons["c.md"]
    assert reasons["d.md"] == "missing answer"
    assert "mapping" in reasons["e.md"]
    assert "UTF-8" in reasons["f.md"]
    assert "alt_questions must be a list of strings" in reasons["g.md"]
    assert "question must be a string" in reasons["h.md"] and "quotes" in reasons["h.md"]
    assert all(error.line == 1 for error in parsed.errors)


def test_empty_markdown_folder(tmp_path: Path) -> None:
    write(tmp_path / "kb" / "readme.txt", "no markdown here")
    with pytest.raises(IngestFileError, match=r"no \.md files"):
        read_articles(tmp_path / "kb")


# --- Whole-file problems and progress --------------------------------------------------------------------------------


def test_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "faq.xlsx", "question,answer\n")
    with pytest.raises(IngestFileError, match=r"\.csv.*\.jsonl.*\.md"):
        read_articles(path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(IngestFileError, match="no such file"):
        read_articles(tmp_path / "nowhere.csv")


def test_progress_is_reported_periodically_and_at_the_end(tmp_path: Path) -> None:
    count = 2 * PROGRESS_EVERY + 7
    rows = "".join(f"Q{n}?,{'A' if n % 10 else ''}\n" for n in range(count))  # every tenth row is rejected
    path = write(tmp_path / "faq.csv", "question,answer\n" + rows)
    calls: list[tuple[int, int]] = []
    parsed = read_articles(path, progress=lambda done, total: calls.append((done, total)))

    assert calls == [(PROGRESS_EVERY, count), (2 * PROGRESS_EVERY, count), (count, count)]
    assert len(parsed.drafts) + len(parsed.errors) == count


def test_progress_on_an_empty_file_still_reports_the_end(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    parsed = read_articles(write(tmp_path / "faq.jsonl", "\n"), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 0)]
    assert parsed == ParsedFile(drafts=[], errors=[], total=0)
