"""Read knowledge-base import files (CSV, JSON Lines, a folder of Markdown files) into ArticleDrafts.

A problem with one row becomes a RowError carrying the row's physical line, and the other rows still load;
a problem with the whole file (unreadable, not UTF-8, no required columns, unknown format) raises IngestFileError.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import frontmatter
import yaml

from knowledge_base.lang import detect_language
from knowledge_base.records import ArticleDraft, RowError

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_ANSWER_CHARS",
    "MAX_QUESTION_CHARS",
    "IngestFileError",
    "ParsedFile",
    "read_articles",
]

ACCEPTED_FORMATS = ".csv, .jsonl (or .ndjson), or a folder of .md files"
MAX_QUESTION_CHARS = 1_000
MAX_ANSWER_CHARS = 20_000
LANGUAGES = ("en", "zh")
STATUSES = ("published", "draft")
PROGRESS_EVERY = 100  # records between two progress callbacks (plus one at the end)

ProgressCallback = Callable[[int, int], None]

_CSV_REQUIRED = ("question", "answer")
_CSV_OPTIONAL = ("alt_questions", "tags", "language", "id", "external_id", "status")
_TAG_SEPARATORS = re.compile(r"[|,;]")
_HEADING = re.compile(r"#[ \t]+(?P<text>.+?)(?:[ \t]+#+)?[ \t]*")


@dataclass
class ParsedFile:
    """What an import file holds: the drafts that passed, with their line (or file ordinal), and the rejected rows."""

    drafts: list[tuple[int, ArticleDraft]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    total: int = 0  # records (CSV), non-blank lines (JSONL) or files (Markdown) read


class IngestFileError(ValueError):
    """The file as a whole cannot be imported: unreadable, not UTF-8, missing required columns, unknown format."""


class _Rejected(Exception):
    """One row cannot be imported; the message is the reason shown to the agent."""


def read_articles(path: Path, *, progress: ProgressCallback | None = None) -> ParsedFile:
    """Read a .csv, .jsonl/.ndjson file or a folder of .md files into drafts and row errors."""
    path = Path(path)
    if not path.exists():
        raise IngestFileError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_markdown_folder(path, progress)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, progress)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, progress)
    raise IngestFileError(f"{path.name}: unsupported import format; accepted: {ACCEPTED_FORMATS}")


# ---------------------------------------------------------------------------------------------------------------------
# Shared: validation, duplicate ids, progress


class _Collector:
    """Accumulates drafts and errors, rejects a repeated external id, and reports progress."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.parsed = ParsedFile(total=total)
        self._progress = progress
        self._done = 0
        self._first_use: dict[str, str] = {}  # external id -> where it was first accepted ("on line 3")

    def add(self, position: int, build: Callable[[], ArticleDraft], *, line: int, where: str, source: str = "") -> None:
        try:
            draft = build()
            if draft.external_id is not None:
                if (earlier := self._first_use.get(draft.external_id)) is not None:
                    raise _Rejected(f"id {draft.external_id} already used {earlier}")
                self._first_use[draft.external_id] = where
        except _Rejected as rejected:
            self.reject(line, str(rejected), source=source, counted=False)
        else:
            self.parsed.drafts.append((position, draft))
        self._tick()

    def reject(self, line: int, reason: str, *, source: str = "", counted: bool = True) -> None:
        self.parsed.errors.append(RowError(line=line, reason=reason, source=source))
        if counted:
            self._tick()

    def finish(self) -> ParsedFile:
        if self._progress is not None:
            self._progress(self._done, self.parsed.total)
        return self.parsed

    def _tick(self) -> None:
        self._done += 1
        if self._progress is not None and self._done % PROGRESS_EVERY == 0 and self._done < self.parsed.total:
            self._progress(self._done, self.parsed.total)


def _make_draft(
    *,
    question: str,
    answer: str,
    alt_questions: Iterable[str] = (),
    tags: Iterable[str] = (),
    language: str = "",
    external_id: str = "",
    status: str = "",
) -> ArticleDraft:
    """Normalise and check one article's fields; raise _Rejected with the reason when they are unusable."""
    question = _collapse(question)
    answer = answer.replace("\r\n", "\n").replace("\r", "\n").strip()
    missing = [name for name, value in (("question", question), ("answer", answer)) if not value]
    if missing:
        raise _Rejected(f"missing {' and '.join(missing)}")
    _check_length("question", question, MAX_QUESTION_CHARS)
    _check_length("answer", answer, MAX_ANSWER_CHARS)
    alternatives = _unique(_collapse(alt) for alt in alt_questions)
    for number, alt in enumerate(alternatives, start=1):
        _check_length(f"alternative question {number}", alt, MAX_QUESTION_CHARS)
    language = language.strip().lower() or detect_language(question)
    if language not in LANGUAGES:
        raise _Rejected(f"language must be {' or '.join(LANGUAGES)} (or empty to detect it), got {language!r}")
    status = status.strip().lower() or "published"
    if status not in STATUSES:
        raise _Rejected(f"status must be {' or '.join(STATUSES)}, got {status!r}")
    return ArticleDraft(
        question=question,
        answer=answer,
        alt_questions=tuple(alt for alt in alternatives if alt != question),
        tags=_unique(tag.strip() for tag in tags),
        language=language,
        external_id=external_id.strip() or None,
        status=status,
    )


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    """The non-empty values, first occurrence kept, in order."""
    return tuple(dict.fromkeys(value for value in values if value))


def _check_length(name: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise _Rejected(f"{name} is {len(text):,} characters long (limit {limit:,})")


def _read_text(path: Path) -> str:
    """The file's text: UTF-8, an optional byte-order mark removed."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise IngestFileError(f"{path.name}: cannot read the file ({error.strerror or error})") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise IngestFileError(
            f"{path.name}: not UTF-8 text (undecodable byte on line {line}); save the file as UTF-8"
        ) from error


# ---------------------------------------------------------------------------------------------------------------------
# CSV


def _read_csv(path: Path, progress: ProgressCallback | None) -> ParsedFile:
    records = list(_csv_records(path))
    if not records:
        raise IngestFileError(f"{path.name}: empty file; expected a header row such as question,answer,tags")
    _, header = records[0]
    columns = _csv_columns(path, header)
    width = len(header)
    rows = records[1:]
    collector = _Collector(len(rows), progress)
    for line, row in rows:
        if len(row) > width and any(cell.strip() for cell in row[width:]):
            collector.reject(
                line, f"{len(row)} fields but the header has {width}; put fields that contain commas in double quotes"
            )
            continue

        def cell(name: str, row: list[str] = row) -> str:
            index = columns.get(name)
            return row[index] if index is not None and index < len(row) else ""

        collector.add(
            line,
            lambda cell=cell: _make_draft(
                question=cell("question"),
                answer=cell("answer"),
                alt_questions=cell("alt_questions").split("|"),
                tags=_TAG_SEPARATORS.split(cell("tags")),
                language=cell("language"),
                external_id=cell("id") or cell("external_id"),
                status=cell("status"),
            ),
            line=line,
            where=f"on line {line}",
        )
    return collector.finish()


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, cells) of each non-blank record; a quoted field may span several lines."""
    # newline="" leaves line breaks inside quoted fields to the csv module, as its documentation asks.
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            hint = " (a quote opened there is never closed)" if "end of data" in str(error) else ""
            raise IngestFileError(f"{path.name}: malformed CSV at line {first_line}{hint}: {error}") from error
        if any(cell.strip() for cell in row):
            yield first_line, row


def _csv_columns(path: Path, header: list[str]) -> dict[str, int]:
    """Map the known column names to their index; unknown columns are ignored."""
    columns: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = re.sub(r"[\s-]+", "_", raw.strip().lower())
        if name not in _CSV_REQUIRED and name not in _CSV_OPTIONAL:
            continue
        if name in columns:
            raise IngestFileError(f"{path.name}: the column {name!r} appears twice in the header")
        columns[name] = index
    missing = [name for name in _CSV_REQUIRED if name not in columns]
    if missing:
        found = ",".join(cell.strip() for cell in header)
        raise IngestFileError(
            f"{path.name}: missing required column(s) {', '.join(missing)}; the header is {found!r}, "
            f"expected question,answer[,alt_questions][,tags][,language][,id][,status]"
        )
    return columns


# ---------------------------------------------------------------------------------------------------------------------
# JSON Lines


def _read_jsonl(path: Path, progress: ProgressCallback | None) -> ParsedFile:
    # Split on "\n" only: str.splitlines() would also break on U+2028 and friends, which JSON strings may hold raw.
    lines = [(number, text) for number, text in enumerate(_read_text(path).split("\n"), start=1) if text.strip()]
    collector = _Collector(len(lines), progress)
    for number, text in lines:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            collector.reject(number, f"invalid JSON at column {error.colno}: {error.msg}")
            continue
        except ValueError:  # an integer of more than 4,300 digits (Python refuses to convert it)
            collector.reject(number, "invalid JSON: a number is too long")
            continue
        except RecursionError:  # hostile nesting ([[[[...) exhausts the decoder's stack
            collector.reject(number, "invalid JSON: nested too deeply")
            continue
        if not isinstance(record, dict):
            collector.reject(number, f"expected a JSON object, got {_kind(record)}")
            continue
        collector.add(number, lambda record=record: _draft_from_mapping(record), line=number, where=f"on line {number}")
    return collector.finish()


def _draft_from_mapping(record: dict[str, Any]) -> ArticleDraft:
    """A draft from a JSON object or a front-matter mapping; also the StackFAQ shape {faq_id, question, answers}."""
    if "answer" not in record and "answers" in record:
        answers = record["answers"]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise _Rejected(f"answers must be a non-empty list of strings, got {_kind(answers)}")
        answer = answers[0]
    else:
        answer = _string(record, "answer")
    return _make_draft(
        question=_string(record, "question"),
        answer=answer,
        alt_questions=_string_list(record, "alt_questions"),
        tags=_tags(record),
        language=_string(record, "language"),
        external_id=_identifier(record),
        status=_string(record, "status"),
    )


def _string(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Rejected(f"{key} must be a string, got {_kind(value)}")
    return value


def _string_list(record: dict[str, Any], key: str) -> list[str]:
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Rejected(f"{key} must be a list of strings, got {_kind(value)}")
    return value


def _tags(record: dict[str, Any]) -> list[str]:
    value = record.get("tags")
    if isinstance(value, str):
        return _TAG_SEPARATORS.split(value)
    if value is None or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        return value or []
    raise _Rejected(f'tags must be a list of strings or a "|"-separated string, got {_kind(value)}')


def _identifier(record: dict[str, Any]) -> str:
    for key in ("id", "external_id", "faq_id"):
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _Rejected(f"{key} must be a string or an integer, got {_kind(value)}")
        return str(value)
    return ""


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------------------------------
# A folder of Markdown files


def _read_markdown_folder(folder: Path, progress: ProgressCallback | None) -> ParsedFile:
    files = sorted(
        (file.relative_to(folder).as_posix(), file)
        for file in folder.rglob("*")
        if file.suffix.lower() == ".md"
        and file.is_file()
        and not any(part.startswith(".") for part in file.relative_to(folder).parts)  # .git, .obsidian...
    )
    if not files:
        raise IngestFileError(f"{folder.name}: no .md files in the folder; accepted: {ACCEPTED_FORMATS}")
    collector = _Collector(len(files), progress)
    for ordinal, (source, file) in enumerate(files, start=1):
        try:
            text = file.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            reason = "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else f"cannot read the file ({error})"
            collector.reject(1, reason, source=source)
            continue
        collector.add(
            ordinal,
            lambda text=text: _draft_from_markdown(text),
            line=1,
            where=f"in {source}",
            source=source,
        )
    return collector.finish()


def _draft_from_markdown(text: str) -> ArticleDraft:
    metadata, body = _split_front_matter(text)
    question = metadata.get("question")
    if question is None:
        question = metadata.get("title")
    if question is None:
        first_line, _, rest = body.partition("\n")
        heading = _HEADING.fullmatch(first_line.strip())
        if heading is None:
            raise _Rejected('no question: give "question" (or "title") in the front matter or start with "# Question"')
        question, body = heading["text"], rest
    if not isinstance(question, str):
        raise _Rejected(f"question must be a string (put it in quotes), got {_kind(question)}")
    return _draft_from_mapping({**metadata, "question": question, "answer": body})


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The front matter as a mapping with lower-case keys, and the body; _Rejected when the front matter is broken."""
    stripped = text.strip()
    handler = frontmatter.detect_format(stripped, frontmatter.handlers)
    if handler is None:
        return {}, stripped
    try:
        raw, body = handler.split(stripped)
    except ValueError as error:
        raise _Rejected(f"the front matter opened on line 1 is never closed with {handler.END_DELIMITER}") from error
    try:
        data = handler.load(raw)
    except yaml.MarkedYAMLError as error:
        where = _yaml_line(text, stripped, handler, error)
        what = f"{error.context}: {error.problem}" if error.context else error.problem
        raise _Rejected(f"invalid YAML front matter{where}: {what}") from error
    except (yaml.YAMLError, ValueError) as error:  # TOML and JSON front matter raise ValueError subclasses
        raise _Rejected(f"invalid front matter: {error}") from error
    except RecursionError:  # hostile nesting ([[[[...) exhausts the parser's stack
        raise _Rejected("invalid front matter: nested too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _Rejected(f"the front matter must be a mapping of keys to values, got {_kind(data)}")
    return {str(key).lower(): value for key, value in data.items()}, body.strip()


def _yaml_line(text: str, stripped: str, handler: Any, error: yaml.MarkedYAMLError) -> str:
    """ " on line N" of the file for a YAML error, when the parser says where."""
    mark = error.context_mark or error.problem_mark  # where the broken construct starts, when YAML says
    opening = handler.FM_BOUNDARY.search(stripped) if handler.FM_BOUNDARY is not None else None
    if mark is None or opening is None:
        return ""
    leading_lines = text[: len(text) - len(text.lstrip())].count("\n")
    return f" on line {leading_lines + stripped.count(chr(10), 0, opening.end()) + mark.line + 1}"
