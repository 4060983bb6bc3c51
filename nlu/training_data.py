"""Reads NLU training data: Rasa 3 YAML (`nlu:` intents, synonyms, regexes, lookups) and text/intent CSV files."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

YAML_SUFFIXES = frozenset({".yml", ".yaml"})
CSV_SUFFIXES = frozenset({".csv"})
DATA_SUFFIXES = YAML_SUFFIXES | CSV_SUFFIXES

ITEM_KINDS = ("intent", "synonym", "regex", "lookup")
CSV_INTENT_COLUMNS = ("intent", "category")  # Banking77 and similar benchmarks name the label column `category`
ENTITY_JSON_KEYS = frozenset({"entity", "value", "role", "group"})

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
# PyYAML follows YAML 1.1, where `intent: yes` is a boolean; Rasa reads YAML 1.2, where it is the string "yes".
_YAML11_ONLY_BOOLS = frozenset({"yes", "no", "on", "off"})
# The line breaks PyYAML keeps inside a literal block scalar (it turns \r\n, \r and \x85 into \n).
_YAML_LINE_BREAK = re.compile("[\n\u2028\u2029]")
_BRACKET = re.compile(r"[\[\]]")


class TrainingDataError(ValueError):
    """A problem in a training-data file, located by its path and, where known, its 1-based line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[type[TrainingDataError], tuple[str, int | None, str]]:
        return type(self), (self.path, self.line, self.message)


@dataclass(frozen=True)
class EntitySpan:
    entity: str
    start: int  # offsets into Example.text (the text with the markup removed), end exclusive
    end: int
    value: str  # the annotated value: the surface text unless the annotation gives another value
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    entities: tuple[EntitySpan, ...] = ()
    source: str = ""  # "path:line" of the example's own line


@dataclass(frozen=True)
class RegexPattern:
    name: str
    pattern: str
    source: str = ""


@dataclass
class TrainingData:
    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)  # casefolded variant -> canonical value
    regexes: list[RegexPattern] = field(default_factory=list)
    lookups: dict[str, list[str]] = field(default_factory=dict)  # lookup table name -> its elements

    def intents(self) -> list[str]:
        """Sorted distinct intents of the examples."""
        return sorted({example.intent for example in self.examples})

    def entity_names(self) -> list[str]:
        """Sorted distinct entity names used in the examples' annotations."""
        return sorted({span.entity for example in self.examples for span in example.entities})

    def merged(self, other: TrainingData) -> TrainingData:
        """A new TrainingData with both sets' contents; on a conflicting synonym, `other` wins (as in Rasa)."""
        lookups = {name: list(elements) for name, elements in self.lookups.items()}
        for name, elements in other.lookups.items():
            lookups.setdefault(name, []).extend(elements)
        return TrainingData(
            examples=[*self.examples, *other.examples],
            synonyms={**self.synonyms, **other.synonyms},
            regexes=[*self.regexes, *other.regexes],
            lookups=lookups,
        )

    def filter(self, predicate: Callable[[Example], bool]) -> TrainingData:
        """The examples that satisfy `predicate`, with the same synonyms, regexes and lookups."""
        return TrainingData(
            examples=[example for example in self.examples if predicate(example)],
            synonyms=dict(self.synonyms),
            regexes=list(self.regexes),
            lookups={name: list(elements) for name, elements in self.lookups.items()},
        )


def parse_annotated(text: str) -> tuple[str, tuple[EntitySpan, ...]]:
    """Strip Rasa's inline entity markup from `text`, returning the plain text and the entity spans in it.

    `[Berlin](city)`, `[Berlin](city:BER)` (legacy value form) and
    `[NYC]{"entity": "city", "value": "New York", "role": "destination", "group": "1"}` are annotations; a bracketed
    phrase followed by neither `(` nor `{` stays literal text, as in Rasa. Columns in messages are 1-based.
    """
    plain: list[str] = []
    entities: list[EntitySpan] = []
    length = 0  # len("".join(plain)), kept as we go
    pos = 0
    while (bracket := _BRACKET.search(text, pos)) is not None:
        opening = bracket.start()
        if bracket.group() == "]":
            raise ValueError(f"unbalanced ']' at column {opening + 1}: no '[' opens it")
        closing = _closing_bracket(text, opening)
        surface = text[opening + 1 : closing]
        after = closing + 1
        marker = text[after : after + 1]
        if marker not in ("(", "{"):
            plain.append(text[pos:after])
            length += after - pos
            pos = after
            continue
        if not surface.strip():
            raise ValueError(f"empty entity text in '[]' at column {opening + 1}")
        plain.append(text[pos:opening])
        length += opening - pos
        if marker == "(":
            entity, value, role, group, pos = _short_annotation(text, after, surface)
        else:
            entity, value, role, group, pos = _json_annotation(text, after, surface)
        entities.append(EntitySpan(entity, length, length + len(surface), value, role, group))
        plain.append(surface)
        length += len(surface)
    plain.append(text[pos:])
    return "".join(plain), tuple(entities)


def load_training_data(*paths: str | Path) -> TrainingData:
    """Load and merge files (.yml/.yaml Rasa 3 NLU, .csv) and directories (searched recursively, sorted by path)."""
    collector = _Collector()
    for path in _data_files(paths):
        if path.suffix.lower() in CSV_SUFFIXES:
            _read_csv(path, collector)
        else:
            _RasaYamlReader(path, collector).read()
    return collector.training_data()


def _closing_bracket(text: str, opening: int) -> int:
    following = _BRACKET.search(text, opening + 1)
    if following is None:
        raise ValueError(f"unbalanced '[' at column {opening + 1}: no ']' closes it")
    if following.group() == "[":
        raise ValueError(
            f"unbalanced '[' at column {opening + 1}: another '[' at column {following.start() + 1}"
            " comes before its ']'"
        )
    return following.start()


def _short_annotation(text: str, paren: int, surface: str) -> tuple[str, str, None, None, int]:
    closing = text.find(")", paren + 1)
    if closing == -1:
        raise ValueError(f"unbalanced '(' at column {paren + 1}: no ')' closes the entity name")
    entity, colon, value = (part.strip() for part in text[paren + 1 : closing].partition(":"))
    if not entity:
        raise ValueError(f"no entity name in '({text[paren + 1 : closing]})' at column {paren + 1}")
    if colon and not value:
        raise ValueError(f"empty value after ':' in '({text[paren + 1 : closing]})' at column {paren + 1}")
    return entity, value if colon else surface, None, None, closing + 1


def _json_annotation(text: str, brace: int, surface: str) -> tuple[str, str, str | None, str | None, int]:
    try:
        attributes, end = json.JSONDecoder().raw_decode(text, brace)
    except json.JSONDecodeError as error:
        raise ValueError(f"bad entity JSON at column {error.pos + 1}: {error.msg}") from None
    except RecursionError:  # hostile nesting ([[[[...) exhausts the decoder's stack; a value is a flat string
        raise ValueError(f"bad entity JSON at column {brace + 1}: nested too deeply") from None
    # A misspelt key ("rol") would otherwise drop the role without a word.
    unknown = sorted(set(attributes) - ENTITY_JSON_KEYS)
    if unknown:
        raise ValueError(
            f"unknown key {', '.join(map(repr, unknown))} in entity JSON at column {brace + 1}"
            " (allowed: entity, value, role, group)"
        )
    for key, attribute in attributes.items():
        if attribute is not None and not isinstance(attribute, str):
            raise ValueError(f"'{key}' in entity JSON at column {brace + 1} must be a string, got {attribute!r}")
    entity = (attributes.get("entity") or "").strip()
    if not entity:
        raise ValueError(f"entity JSON at column {brace + 1} has no 'entity'")
    value = attributes.get("value") or surface
    return entity, value, attributes.get("role") or None, attributes.get("group") or None, end


class _Collector:
    """What the files read so far hold; one of these per load avoids re-copying lists merge after merge."""

    def __init__(self) -> None:
        self.examples: list[Example] = []
        self.synonyms: dict[str, str] = {}
        self.regexes: list[RegexPattern] = []
        self.lookups: dict[str, list[str]] = {}

    def add_example(self, example: Example) -> None:
        self.examples.append(example)
        # Rasa's implicit synonyms: `[NYC](city:New York)` maps "NYC" to "New York" wherever it is extracted.
        for span in example.entities:
            surface = example.text[span.start : span.end]
            if surface != span.value:
                self.synonyms[surface.casefold()] = span.value

    def training_data(self) -> TrainingData:
        return TrainingData(self.examples, self.synonyms, self.regexes, self.lookups)


def _data_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [
                file
                for file in path.rglob("*")
                if file.suffix.lower() in DATA_SUFFIXES
                # hidden folders hold caches and editor files, not training data
                and not any(part.startswith(".") for part in file.relative_to(path).parts)
                and file.is_file()
            ]
            yield from sorted(found, key=lambda file: file.relative_to(path).parts)
        elif path.is_file():
            if path.suffix.lower() not in DATA_SUFFIXES:
                raise TrainingDataError(path, None, "unsupported file type: expected .yml, .yaml or .csv")
            yield path
        else:
            raise TrainingDataError(path, None, "no such file or directory")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TrainingDataError(path, None, f"cannot read the file: {error.strerror or error}") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TrainingDataError(path, line, f"not valid UTF-8 (byte {error.start})") from error


def _read_csv(path: Path, collector: _Collector) -> None:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header: list[str] | None = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise TrainingDataError(path, None, "empty CSV: expected a header with 'text' and 'intent' columns")
        columns = [cell.strip().casefold() for cell in header]
        if "text" not in columns:
            raise TrainingDataError(path, None, f"no 'text' column in the header {header!r}")
        intent_column = next((name for name in CSV_INTENT_COLUMNS if name in columns), None)
        if intent_column is None:
            raise TrainingDataError(path, None, f"no 'intent' (or 'category') column in the header {header!r}")
        text_at, intent_at = columns.index("text"), columns.index(intent_column)
        # line_num is the line a record ends on; a quoted newline makes a record start earlier
        ended = reader.line_num
        for row in reader:
            line, ended = ended + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            text = row[text_at].strip() if text_at < len(row) else ""
            intent = row[intent_at].strip() if intent_at < len(row) else ""
            if not text:
                raise TrainingDataError(path, line, "empty text")
            if not intent:
                raise TrainingDataError(path, line, f"missing {intent_column} for {text!r}")
            collector.add_example(Example(text=text, intent=intent, source=f"{path}:{line}"))
    except csv.Error as error:
        raise TrainingDataError(path, reader.line_num or None, f"malformed CSV: {error}") from error


class _RasaYamlReader:
    """One Rasa 3 YAML file, read from PyYAML's node graph so that every problem can name its line."""

    def __init__(self, path: Path, collector: _Collector) -> None:
        self.path = path
        self.collector = collector

    def read(self) -> None:
        text = _read_text(self.path)
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            problem = " ".join(part for part in (error.context, error.problem) if part)
            raise TrainingDataError(self.path, mark.line + 1 if mark else None, f"invalid YAML: {problem}") from error
        except yaml.reader.ReaderError as error:
            line = text[: error.position].count("\n") + 1
            raise TrainingDataError(self.path, line, f"invalid YAML: {error.reason}") from error
        except RecursionError:  # PyYAML composes nested collections recursively: a few hundred deep exhaust the stack
            raise TrainingDataError(self.path, None, "invalid YAML: collections nested too deeply") from None
        if root is None or _is_null(root):
            return
        if not isinstance(root, MappingNode):
            raise self._error(root, "expected a mapping with keys such as 'version' and 'nlu' at the top level")
        for key, value in root.value:
            # stories, rules, responses, intents, entities...: other readers' business
            if isinstance(key, ScalarNode) and key.value == "nlu" and not _is_null(value):
                if not isinstance(value, SequenceNode):
                    raise self._error(value, "'nlu' must be a list of intent, synonym, regex and lookup items")
                for item in value.value:
                    self._read_item(item)

    def _read_item(self, item: Node) -> None:
        if not isinstance(item, MappingNode):
            raise self._error(item, "an 'nlu' item must be a mapping with one of the keys: " + ", ".join(ITEM_KINDS))
        keys = [key.value for key, _ in item.value if isinstance(key, ScalarNode)]
        kinds = [key for key in keys if key in ITEM_KINDS]
        if not kinds:
            found = ", ".join(repr(key) for key in keys) or "none"
            raise self._error(item, f"an 'nlu' item needs one of the keys {', '.join(ITEM_KINDS)} (found {found})")
        if len(kinds) > 1:
            raise self._error(item, f"an 'nlu' item has exactly one of {', '.join(ITEM_KINDS)}, not {kinds}")
        kind = kinds[0]
        name = self._name(_value_of(item, kind), kind)
        entries = self._entries(item, kind, name)
        if kind == "intent":
            self._read_intent(name, entries)
        elif kind == "synonym":
            for variant, _ in entries:
                self.collector.synonyms[variant.casefold()] = name
        elif kind == "regex":
            self._read_regex(name, entries)
        else:
            self.collector.lookups.setdefault(name, []).extend(element for element, _ in entries)

    def _read_intent(self, intent: str, entries: list[tuple[str, int]]) -> None:
        for raw, line in entries:
            try:
                text, entities = parse_annotated(raw)
            except ValueError as error:
                raise TrainingDataError(self.path, line, f"bad entity annotation in {raw!r}: {error}") from error
            if not text.strip():
                raise TrainingDataError(self.path, line, f"example of intent '{intent}' has no text")
            example = Example(text=text, intent=intent, entities=entities, source=f"{self.path}:{line}")
            self.collector.add_example(example)

    def _read_regex(self, name: str, entries: list[tuple[str, int]]) -> None:
        for pattern, line in entries:
            try:
                re.compile(pattern)
            except re.error as error:
                message = f"regex '{name}': invalid pattern {pattern!r}: {error}"
                raise TrainingDataError(self.path, line, message) from error
            self.collector.regexes.append(RegexPattern(name=name, pattern=pattern, source=f"{self.path}:{line}"))

    def _name(self, node: Node, kind: str) -> str:
        if _is_null(node):
            raise self._error(node, f"the {kind} has an empty name")
        if not isinstance(node, ScalarNode) or not _is_string(node):
            shown = repr(node.value) if isinstance(node, ScalarNode) else f"a {node.id}"
            raise self._error(node, f"the {kind} name must be a string, not {shown} (quote it)")
        name = node.value.strip()
        if not name:
            raise self._error(node, f"the {kind} has an empty name")
        return name

    def _entries(self, item: MappingNode, kind: str, name: str) -> list[tuple[str, int]]:
        """The item's examples as (text, 1-based line) pairs: blank lines and `#` comments left out."""
        pair = next(((key, value) for key, value in item.value if _key_is(key, "examples")), None)
        if pair is None:
            raise self._error(item, f"{kind} '{name}' has no 'examples'")
        key, examples = pair
        if isinstance(examples, ScalarNode):
            entries = [] if _is_null(examples) else list(self._block_entries(examples))
        elif isinstance(examples, SequenceNode):
            entries = [self._list_entry(element) for element in examples.value]
        else:
            shape = "a block string ('examples: |') or a list"
            raise self._error(examples, f"the examples of {kind} '{name}' must be {shape}")
        if not entries:
            raise self._error(key, f"{kind} '{name}' has empty 'examples'")
        for text, line in entries:
            if not text:
                raise TrainingDataError(self.path, line, f"empty example in {kind} '{name}'")
        return entries

    def _block_entries(self, node: ScalarNode) -> Iterator[tuple[str, int]]:
        # A `|` scalar's mark is on the indicator's line and its value keeps every source line (leading blank ones
        # included), so its n-th line is n lines below the indicator's next line. Folded and flow scalars join
        # lines: their examples can only be placed at the scalar's start.
        literal = node.style == "|"
        first = node.start_mark.line + (2 if literal else 1)
        for offset, raw in enumerate(_YAML_LINE_BREAK.split(node.value)):
            line = first + offset if literal else first
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if not stripped.startswith("-"):
                raise TrainingDataError(self.path, line, f"an example must start with '- ', got {stripped!r}")
            # Rasa drops the '-' and strips what follows, so "-hello" is the example "hello" there as here.
            yield stripped[1:].strip(), line

    def _list_entry(self, element: Node) -> tuple[str, int]:
        node = element
        if isinstance(element, MappingNode):
            text = _value_of(element, "text")
            if text is None:
                raise self._error(element, "a listed example must be a string or a mapping with 'text'")
            node = text
        if not isinstance(node, ScalarNode):
            raise self._error(node, "a listed example must be a string or a mapping with 'text'")
        # The source characters, not PyYAML's YAML 1.1 reading of them: `- 12:30` is text, not the integer 750.
        return ("" if _is_null(node) else node.value.strip()), node.start_mark.line + 1

    def _error(self, node: Node, message: str) -> TrainingDataError:
        return TrainingDataError(self.path, node.start_mark.line + 1, message)


def _key_is(key: Node, name: str) -> bool:
    return isinstance(key, ScalarNode) and key.value == name


def _value_of(mapping: MappingNode, name: str) -> Node | None:
    return next((value for key, value in mapping.value if _key_is(key, name)), None)


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


def _is_string(node: ScalarNode) -> bool:
    return node.tag == _STR_TAG or (node.tag == _BOOL_TAG and node.value.casefold() in _YAML11_ONLY_BOOLS)
