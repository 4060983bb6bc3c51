"""The segment rule builder's form: rows of field / operator / value in groups ("all of", "any of", "none of"), one
level of groups inside the top one, turned into the rule JSON of crm_store/segments.py and back.

Form names follow each node's path: the top group is `r` (`r.match`), its items `r.0`, `r.1`, ... and a nested
group's items `r.1.0`, ...; a condition posts `<path>.field`, `.op`, `.value` (repeated for a multiple choice),
`.high` (the upper number of `between`) and `.course` (course_progress's course). Values are posted as typed; the
domain's parser says what is wrong with them (InvalidSegment), so this module only turns typed text into JSON types
where it parses."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from crm_store.errors import InvalidSegment
from crm_store.segments import FIELDS, LISTS, dump_rule, parse_rule

MATCHES = {"all": "all of", "any": "any of", "none": "none of"}
MAX_GROUP_DEPTH = 2  # the top group and groups inside it; deeper rules are edited as JSON
MAX_NODES = 120
MAX_JSON = 50_000  # characters of the advanced textarea

FIELD_LABELS = {
    "tier": "Loyalty tier", "points": "Points balance", "language": "Language", "channel": "Channel",
    "tags": "Tags", "consent": "Marketing consent", "last_order_date": "Last order", "order_count": "Orders",
    "order_total": "Order total", "rfm_recency": "RFM recency (1–5)", "rfm_frequency": "RFM frequency (1–5)",
    "rfm_monetary": "RFM monetary (1–5)", "last_contact": "Last message from them", "csat": "Latest CSAT score",
    "nps": "Latest NPS score", "nps_group": "NPS group", "course": "Course", "course_progress": "Course progress (%)",
}
OP_LABELS = {
    "eq": "is", "in": "is one of", "not_in": "is none of", "gt": "more than", "gte": "at least", "lt": "less than",
    "lte": "at most", "between": "between", "has_any": "has any of", "has_all": "has all of",
    "has_none": "has none of", "is": "is", "answered": "answered one", "before": "before", "after": "after",
    "within_days": "in the last … days", "not_within_days": "not in the last … days", "never": "never",
    "enrolled": "enrolled in", "completed": "completed", "not_enrolled": "not enrolled in",
}
Widget = Literal["none", "bool", "date", "days", "course", "range", "number", "multi", "select", "list", "text"]


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " "))


def op_label(op: str) -> str:
    return OP_LABELS.get(op, op.replace("_", " "))


def widget(name: str, op: str) -> Widget:
    """The value input a field and operator take."""
    spec = FIELDS.get(name)
    if spec is None or op == "never":
        return "none"
    if op in ("is", "answered"):
        return "bool"
    if op in ("before", "after"):
        return "date"
    if op in ("within_days", "not_within_days"):
        return "days"
    if spec.kind == "course":
        return "course"
    if op == "between":
        return "range"
    if spec.kind in ("integer", "number"):
        return "number"
    chosen = name == "tier" or bool(spec.choices)  # a closed set of names: a select
    if op in LISTS:
        return "multi" if chosen else "list"
    return "select" if chosen else "text"


def _number(text: str) -> Any:
    """An int or a finite float when the text is one, else the text (the parser names what it should be)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


@dataclass
class Row:
    """One condition as the form holds it (every value as typed)."""

    field: str = ""
    op: str = ""
    value: str = ""
    chosen: tuple[str, ...] = ()  # a multiple choice's selected names
    high: str = ""
    course: str = ""
    was: str = ""  # the field the page showed: when it changed, the values typed for the old one go

    def blank(self) -> bool:
        return not self.field

    @property
    def ops(self) -> tuple[str, ...]:
        spec = FIELDS.get(self.field)
        return spec.ops if spec else ()

    @property
    def widget(self) -> Widget:
        return widget(self.field, self.op)

    def normalized(self) -> Row:
        """The row as the builder shows it after a change: an operator its field has, no values of another field."""
        if self.field != self.was:
            self.value, self.chosen, self.high, self.course = "", (), "", ""
        if self.field in FIELDS and self.op not in self.ops:
            self.op = self.ops[0]
        if self.widget == "bool" and not self.value:
            self.value = "yes"  # what the yes/no select shows first
        self.was = self.field
        return self

    def condition(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "op": self.op}
        if self.field == "course_progress":
            out["course"] = self.course.strip()
        kind = self.widget
        if kind == "bool":
            out["value"] = {"yes": True, "no": False}.get(self.value, self.value)
        elif kind in ("days", "number"):
            out["value"] = _number(self.value)
        elif kind == "range":
            out["value"] = [_number(self.value), _number(self.high)]
        elif kind == "multi":
            out["value"] = list(self.chosen)
        elif kind == "list":
            out["value"] = [item.strip() for item in self.value.split(",") if item.strip()]
        elif kind != "none":
            out["value"] = self.value.strip()
        return out

    @classmethod
    def of(cls, c: Mapping[str, Any], course_keys: Mapping[int, str]) -> Row:
        value, op = c.get("value"), str(c.get("op", ""))
        name = str(c.get("field", ""))
        row = cls(name, op, course=_course_text(c.get("course"), course_keys), was=name)
        if isinstance(value, bool):
            row.value = "yes" if value else "no"
        elif isinstance(value, list) and op == "between":
            row.value, row.high = (str(v) for v in value)
        elif isinstance(value, list):
            row.chosen = tuple(str(v) for v in value)
            row.value = ", ".join(row.chosen)
        elif row.field == "course":
            row.value = _course_text(value, course_keys)
        elif value is not None:
            row.value = str(value)
        return row


def _course_text(ref: Any, course_keys: Mapping[int, str]) -> str:
    """A course reference as the course select shows it: the key (a rule may name the course by id)."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return course_keys.get(ref, str(ref))
    return "" if ref is None else str(ref)


@dataclass
class Group:
    match: str = "all"
    items: list[Row | Group] = field(default_factory=list)

    def blank(self) -> bool:
        return all(item.blank() for item in self.items)

    def rule(self) -> dict[str, Any]:
        """The group as a rule; rows without a field and groups without a condition are left out."""
        items = [item.condition() if isinstance(item, Row) else item.rule()
                 for item in self.items if not item.blank()]
        if self.match == "none":
            return {"not": items[0]} if len(items) == 1 else {"not": {"any": items}}
        return {self.match: items}

    def node(self, path: Sequence[int]) -> Row | Group | None:
        node: Row | Group = self
        for index in path:
            if not isinstance(node, Group) or not 0 <= index < len(node.items):
                return None
            node = node.items[index]
        return node


def _group_of(raw: Any, course_keys: Mapping[int, str], depth: int = 1) -> Group | None:
    """The builder's group for a rule, or None when the builder cannot show it (then it is edited as JSON)."""
    if not isinstance(raw, Mapping):
        return None
    if "all" in raw or "any" in raw:
        match, children = ("all", raw["all"]) if "all" in raw else ("any", raw["any"])
    elif "not" in raw:
        inner = raw["not"]
        match, children = "none", inner["any"] if isinstance(inner, Mapping) and "any" in inner else [inner]
    else:
        return Group("all", [Row.of(raw, course_keys)]) if depth == 1 else None
    group = Group(match)
    for child in children:
        if isinstance(child, Mapping) and not {"all", "any", "not"} & set(child):
            group.items.append(Row.of(child, course_keys))
        elif depth < MAX_GROUP_DEPTH and (inner_group := _group_of(child, course_keys, depth + 1)) is not None:
            group.items.append(inner_group)
        else:
            return None
    return group


def _canonical(rule: Any, course_keys: Mapping[int, str]) -> Any:
    """A rule as the builder writes it: `not any` of one rule as `not` of it, courses by key rather than id."""
    if isinstance(rule, list):
        return [_canonical(item, course_keys) for item in rule]
    if not isinstance(rule, dict):
        return rule
    inner = rule.get("not")
    if len(rule) == 1 and isinstance(inner, dict) and len(inner) == 1 and len(inner.get("any") or ()) == 1:
        return {"not": _canonical(inner["any"][0], course_keys)}
    if "field" in rule:
        ref = "value" if rule["field"] == "course" else "course"
        return {**rule, ref: _course_text(rule[ref], course_keys)} if ref in rule else rule
    return {key: _canonical(value, course_keys) for key, value in rule.items()}


def builder_of(rules: Any, course_keys: Mapping[int, str]) -> Group | None:
    """The builder for a rule when it shows the rule exactly, else None; InvalidSegment when the rule is wrong."""
    canonical = _canonical(dump_rule(parse_rule(rules)), course_keys)
    if "field" in canonical:  # one condition: the builder's top group holds it
        canonical = {"all": [canonical]}
    group = _group_of(canonical, course_keys)
    if group is None:
        return None
    try:
        same = dump_rule(parse_rule(group.rule())) == canonical
    except InvalidSegment:  # a value the builder would write differently
        return None
    return group if same else None


# --- the posted form -------------------------------------------------------------------------------------------

NODE = re.compile(r"r((?:\.\d{1,3}){1,2})\.(field|match)")


def _path(text: str) -> tuple[int, ...] | None:
    """`r`, `r.1` or `r.1.0` as (), (1,), (1, 0)."""
    parts = text.split(".")
    if parts[0] != "r" or not all(p.isdigit() and len(p) <= 3 for p in parts[1:]) or len(parts) > 3:
        return None
    return tuple(int(p) for p in parts[1:])


@dataclass
class SegmentForm:
    """The whole form: name, description, and the rule as builder rows or (advanced) JSON."""

    name: str = ""
    description: str = ""
    mode: str = "builder"  # or "json"
    root: Group = field(default_factory=lambda: Group("all", [Row()]))
    rules_json: str = ""
    note: str | None = None  # why the builder changed mode or refused a change

    @classmethod
    def posted(cls, data: Any) -> SegmentForm:
        """The form from the request's form data (a starlette FormData)."""

        def text(name: str, default: str = "") -> str:
            value = data.get(name, default)
            return value if isinstance(value, str) else default

        def match(name: str) -> str:
            return value if (value := text(name, "all")) in MATCHES else "all"

        kinds: dict[tuple[int, ...], str] = {}
        for key in data:
            if found := NODE.fullmatch(key):
                kinds[tuple(int(p) for p in found[1][1:].split("."))] = found[2]
        root = Group(match("r.match"))
        groups: dict[tuple[int, ...], Group] = {(): root}
        for path in sorted(kinds)[:MAX_NODES]:
            parent, at = groups.get(path[:-1]), "r." + ".".join(map(str, path))
            if parent is None:
                continue
            if kinds[path] == "match" and len(path) < MAX_GROUP_DEPTH:
                groups[path] = Group(match(f"{at}.match"))
                parent.items.append(groups[path])
            elif kinds[path] == "field":
                chosen = tuple(v for v in data.getlist(f"{at}.value") if isinstance(v, str))
                parent.items.append(Row(text(f"{at}.field"), text(f"{at}.op"), chosen[0] if chosen else "",
                                        chosen, text(f"{at}.high"), text(f"{at}.course"), text(f"{at}.was")))
        mode = "json" if text("mode") == "json" else "builder"
        return cls(text("name"), text("description"), mode, root, text("rules_json")[:MAX_JSON])

    @classmethod
    def of(cls, name: str, description: str, rules: Mapping[str, Any], course_keys: Mapping[int, str]) -> SegmentForm:
        """The form of a saved segment: builder rows, or JSON when the builder cannot show the rule."""
        try:
            root = builder_of(rules, course_keys)
        except InvalidSegment:  # saved before a rule change of the store: shown as it is, to be fixed
            root = None
        if root is not None:
            return cls(name, description, "builder", root)
        return cls(name, description, "json", Group(), _pretty(rules),
                   note="This rule nests deeper than the builder shows: edit it as JSON.")

    def rules(self) -> dict[str, Any]:
        """The rule the form describes; InvalidSegment when the JSON does not parse."""
        if self.mode == "builder":
            return self.root.rule()
        try:
            rules = json.loads(self.rules_json)
        except (ValueError, RecursionError) as exc:
            where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise InvalidSegment(f"The rule is not valid JSON{where}.") from None
        if not isinstance(rules, dict):
            raise InvalidSegment('A rule is a JSON object: a condition {"field", "op", "value"} or a group '
                                 '{"all": [...]}, {"any": [...]} or {"not": {...}}.')
        return rules

    def rule_json(self) -> str:
        """The rule as the advanced textarea shows it."""
        return self.rules_json if self.mode == "json" else _pretty(self.root.rule())

    def apply(self, action: str, course_keys: Mapping[int, str]) -> SegmentForm:
        """A builder change: `add:<group>`, `group:<group>`, `remove:<node>`, `json`, `builder`, or (anything
        else) the rows shown again after a field or operator changed."""
        verb, _, where = action.partition(":")
        path = _path(where)
        if verb == "json" and self.mode == "builder":
            self.mode, self.rules_json = "json", _pretty(self.root.rule())
        elif verb == "builder" and self.mode == "json":
            self._to_builder(course_keys)
        elif path is not None:
            self._change(verb, path)
        for row in _rows(self.root):
            row.normalized()
        return self

    def _change(self, verb: str, path: tuple[int, ...]) -> None:
        target = self.root.node(path)
        if verb == "add" and isinstance(target, Group):
            target.items.append(Row())
        elif verb == "group" and isinstance(target, Group) and len(path) + 1 < MAX_GROUP_DEPTH:
            target.items.append(Group("any", [Row()]))
        elif verb == "remove" and path and target is not None:
            parent = self.root.node(path[:-1])
            if isinstance(parent, Group):
                del parent.items[path[-1]]

    def _to_builder(self, course_keys: Mapping[int, str]) -> None:
        try:
            root = builder_of(self.rules(), course_keys)  # InvalidSegment: the JSON or the rule is wrong
        except InvalidSegment as exc:
            self.note = f"{exc} Fix it here first, or the builder cannot show it."
            return
        if root is None:
            self.note = "This rule nests deeper than the builder shows: keep editing it as JSON."
            return
        self.mode, self.root = "builder", root


def _rows(group: Group) -> list[Row]:
    return [row for item in group.items for row in ([item] if isinstance(item, Row) else _rows(item))]


def _pretty(rules: Any) -> str:
    return json.dumps(rules, indent=2, ensure_ascii=False)
