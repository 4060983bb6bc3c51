from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from nlu.training_data import (
    EntitySpan,
    Example,
    RegexPattern,
    TrainingData,
    TrainingDataError,
    load_training_data,
    parse_annotated,
)

# A Rasa 3 project's NLU file as people write them: metadata, comments and blank lines inside the blocks, all three
# annotation styles, a synonym, a regex, a lookup, and keys for other readers (stories, responses) in the same file.
RASA_NLU = """\
version: "3.1"

nlu:
# orders
- intent: track_order
  metadata:
    owner: support
  examples: |
    - where is my order?
    - 我想查一下订单[KT-1028](order_id)的物流

    # the legacy value form also makes a synonym
    - has [my parcel](shipment:parcel) left yet
- intent: ship_order
  examples: |
    - from [Berlin]{"entity": "city", "role": "origin", "group": "1"} to [NYC](city)
    - ship to [NYC]{"entity": "city", "value": "New York", "role": "destination", "group": "2"}
    - deliver to [the big apple](city:New York)
- intent: greet
  examples: |
    - hi
    - hello there
- synonym: New York
  examples: |
    - nyc
    - New York City
- regex: order_id
  examples: |
    - KT-\\d{4}
- lookup: city
  examples: |
    - Berlin
    - Shanghai
stories:
- story: greet
  steps:
  - intent: greet
  - action: utter_greet
responses:
  utter_greet:
  - text: "Hi! How can I help?"
"""


def write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def line_of(content: str, needle: str) -> int:
    """The 1-based line of the one line in `content` that contains `needle`."""
    lines = [number for number, line in enumerate(content.splitlines(), start=1) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def spans(example: Example) -> list[tuple[str, str, str, str | None, str | None]]:
    return [
        (span.entity, example.text[span.start : span.end], span.value, span.role, span.group)
        for span in example.entities
    ]


def test_loads_a_rasa_3_nlu_file(tmp_path: Path) -> None:
    path = write(tmp_path / "nlu.yml", RASA_NLU)

    data = load_training_data(path)

    assert [(example.intent, example.text) for example in data.examples] == [
        ("track_order", "where is my order?"),
        ("track_order", "我想查一下订单KT-1028的物流"),
        ("track_order", "has my parcel left yet"),
        ("ship_order", "from Berlin to NYC"),
        ("ship_order", "ship to NYC"),
        ("ship_order", "deliver to the big apple"),
        ("greet", "hi"),
        ("greet", "hello there"),
    ]
    by_text = {example.text: example for example in data.examples}
    assert spans(by_text["我想查一下订单KT-1028的物流"]) == [("order_id", "KT-1028", "KT-1028", None, None)]
    assert spans(by_text["has my parcel left yet"]) == [("shipment", "my parcel", "parcel", None, None)]
    assert spans(by_text["from Berlin to NYC"]) == [
        ("city", "Berlin", "Berlin", "origin", "1"),
        ("city", "NYC", "NYC", None, None),
    ]
    assert spans(by_text["ship to NYC"]) == [("city", "NYC", "New York", "destination", "2")]
    assert by_text["where is my order?"].entities == ()
    # explicit synonyms, and the implicit ones from annotations whose value differs from their text
    assert data.synonyms == {
        "my parcel": "parcel",
        "nyc": "New York",
        "the big apple": "New York",
        "new york city": "New York",
    }
    assert data.regexes == [RegexPattern("order_id", r"KT-\d{4}", f"{path}:{line_of(RASA_NLU, '- KT-')}")]
    assert data.lookups == {"city": ["Berlin", "Shanghai"]}
    assert data.intents() == ["greet", "ship_order", "track_order"]
    assert data.entity_names() == ["city", "order_id", "shipment"]


def test_each_example_knows_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path / "nlu.yml", RASA_NLU)

    data = load_training_data(path)

    # the blank line and the comment inside the track_order block shift the third example down by two
    assert [example.source for example in data.examples[:3]] == [f"{path}:9", f"{path}:10", f"{path}:13"]
    for example in data.examples:
        assert example.source == f"{path}:{line_of(RASA_NLU, '- ' + example.text[:3])}", example


def test_list_form_examples_take_strings_and_text_mappings(tmp_path: Path) -> None:
    content = """\
nlu:
- intent: check_balance
  examples:
  - what is my balance
  - text: how much is on my [savings](account) account
    metadata:
      sentiment: neutral
  - text: "12:30"
- intent: greet
  examples: ["hi", "hey"]
"""
    path = write(tmp_path / "nlu.yaml", content)

    data = load_training_data(path)

    assert [(example.text, example.source) for example in data.examples] == [
        ("what is my balance", f"{path}:4"),
        ("how much is on my savings account", f"{path}:5"),
        ("12:30", f"{path}:8"),  # the source text, not PyYAML's YAML 1.1 sexagesimal integer
        ("hi", f"{path}:10"),
        ("hey", f"{path}:10"),
    ]
    assert spans(data.examples[1]) == [("account", "savings", "savings", None, None)]


def test_names_that_yaml_1_1_reads_as_booleans_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "nlu.yml", "nlu:\n- intent: yes\n  examples: |\n    - sure\n")

    assert load_training_data(path).intents() == ["yes"]


def test_directory_loads_nested_yaml_and_csv_in_path_order(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write(root / "stories.yml", "version: '3.1'\nstories:\n- story: s\n  steps:\n  - intent: greet\n")
    write(root / "nlu" / "orders.yml", "nlu:\n- intent: track_order\n  examples: |\n    - where is it\n")
    write(root / "nlu" / "chitchat" / "greet.yaml", "nlu:\n- intent: greet\n  examples: |\n    - hello\n")
    write(root / "benchmarks" / "banking.csv", "text,category\nmy card is lost,lost_or_stolen_card\n")
    write(root / "README.md", "not training data")
    write(root / ".cache" / "broken.yml", "nlu: [")  # hidden folders are never read

    data = load_training_data(root)

    assert [(example.text, example.source) for example in data.examples] == [
        ("my card is lost", f"{root / 'benchmarks' / 'banking.csv'}:2"),
        ("hello", f"{root / 'nlu' / 'chitchat' / 'greet.yaml'}:4"),
        ("where is it", f"{root / 'nlu' / 'orders.yml'}:4"),
    ]


def test_several_paths_are_merged(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yml", "nlu:\n- lookup: city\n  examples: |\n    - Berlin\n")
    write(tmp_path / "more" / "b.yml", "nlu:\n- lookup: city\n  examples: |\n    - Paris\n")

    assert load_training_data(first, str(tmp_path / "more")).lookups == {"city": ["Berlin", "Paris"]}


def test_csv_with_category_column_and_quoted_newlines(tmp_path: Path) -> None:
    content = 'id,text,category\n1,"my card\nwas stolen",card_lost\n\n2,What is the exchange rate?,exchange_rate\n'
    path = write(tmp_path / "banking77.csv", content)

    data = load_training_data(path)

    assert data.examples == [
        Example("my card\nwas stolen", "card_lost", source=f"{path}:2"),
        Example("What is the exchange rate?", "exchange_rate", source=f"{path}:5"),
    ]


def test_csv_text_is_taken_literally(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "intent,text\nrename,call me [Bob](name)\n")

    assert load_training_data(path).examples == [Example("call me [Bob](name)", "rename", source=f"{path}:2")]


YAML_ERRORS = [
    pytest.param(
        "nlu:\n- intent: greet\n  examples: |\n    - hi\n- entity: city\n  examples: |\n    - x\n",
        5,
        "needs one of the keys intent, synonym, regex, lookup",
        id="item-without-known-key",
    ),
    pytest.param("version: '3.1'\nnlu:\n  intent: greet\n", 3, "'nlu' must be a list", id="nlu-not-a-list"),
    pytest.param("nlu:\n- just a string\n", 2, "must be a mapping", id="item-not-a-mapping"),
    pytest.param(
        "nlu:\n- intent: greet\n  metadata: {}\n", 2, "intent 'greet' has no 'examples'", id="missing-examples"
    ),
    pytest.param(
        "nlu:\n- intent: greet\n  examples: |\n    # to do\n- intent: bye\n  examples: |\n    - bye\n",
        3,
        "intent 'greet' has empty 'examples'",
        id="examples-only-a-comment",
    ),
    pytest.param("nlu:\n- regex: zip\n  examples:\n", 3, "regex 'zip' has empty 'examples'", id="examples-null"),
    pytest.param(
        "nlu:\n- intent: greet\n  examples: |\n    - hi\n\n    # more\n    hello there\n",
        7,
        "must start with '- '",
        id="line-without-dash",
    ),
    pytest.param(
        "nlu:\n- intent: greet\n  examples: |\n\n\n    - hi\n    -\n",
        7,
        "empty example in intent 'greet'",
        id="empty-example-after-leading-blank-lines",
    ),
    pytest.param(
        "nlu:\n- intent: greet\n  examples: |-\n    - hi\n    - [there](who\n", 5, "unbalanced '('", id="unclosed-paren"
    ),
    pytest.param(
        'nlu:\n- intent: go\n  examples: |\n    - to [Rome]{"entity": city}\n', 4, "bad entity JSON", id="bad-json"
    ),
    pytest.param(
        "nlu:\n- intent: go\n  examples: |\n    - to [Rome(city)\n", 4, "unbalanced '['", id="unclosed-bracket"
    ),
    pytest.param(
        "nlu:\n- regex: order_id\n  examples: |\n    - KT-\\d{4}\n    - KT-(\\d+\n",
        5,
        "regex 'order_id': invalid pattern",
        id="bad-regex",
    ),
    pytest.param("nlu:\n- intent: 42\n  examples: |\n    - hi\n", 2, "intent name must be a string", id="int-intent"),
    pytest.param(
        "nlu:\n- intent: [a, b]\n  examples: |\n    - hi\n", 2, "intent name must be a string", id="list-intent"
    ),
    pytest.param("nlu:\n- intent:\n  examples: |\n    - hi\n", 2, "empty name", id="null-intent"),
    pytest.param(
        "nlu:\n- intent: greet\n  examples:\n  - hi\n  - metadata: {a: 1}\n",
        5,
        "a mapping with 'text'",
        id="list-entry-without-text",
    ),
    pytest.param("nlu:\n- intent: greet\n  examples:\n  - hi\n  - ''\n", 5, "empty example", id="empty-list-entry"),
    pytest.param(
        "nlu:\n- intent: greet\n  examples: |\n    - hi\n - intent: bye\n", 5, "invalid YAML", id="yaml-syntax"
    ),
    pytest.param(
        "nlu:\n- intent: greet\r\n  examples: |\r\n    - hi\r\n    bye\r\n",
        5,
        "must start with '- '",
        id="crlf-line-endings",
    ),
    pytest.param("- intent: greet\n", 1, "expected a mapping", id="top-level-list"),
]


@pytest.mark.parametrize(("content", "line", "fragment"), YAML_ERRORS)
def test_yaml_errors_name_file_and_line(tmp_path: Path, content: str, line: int, fragment: str) -> None:
    path = tmp_path / "nlu.yml"
    path.write_bytes(content.encode("utf-8"))

    with pytest.raises(TrainingDataError) as caught:
        load_training_data(path)

    error = caught.value
    assert (error.path, error.line) == (str(path), line)
    assert str(error) == f"{path}:{line}: {error.message}"
    assert fragment in error.message


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        pytest.param('text,intent\n"two\nlines",ok\n ,greet\n', 4, "empty text", id="empty-text"),
        pytest.param("text,category\nhello,greet\nbye\n", 3, "missing category", id="missing-intent"),
    ],
)
def test_csv_row_errors_name_file_and_line(tmp_path: Path, content: str, line: int, fragment: str) -> None:
    path = write(tmp_path / "data.csv", content)

    with pytest.raises(TrainingDataError) as caught:
        load_training_data(path)

    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("data.csv", "utterance,intent\nhi,greet\n", "no 'text' column"),
        ("data.csv", "text,label\nhi,greet\n", "no 'intent' (or 'category') column"),
        ("data.csv", "", "empty CSV"),
        ("notes.txt", "hi", "unsupported file type"),
    ],
)
def test_file_level_errors_have_no_line(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = write(tmp_path / name, content)

    with pytest.raises(TrainingDataError) as caught:
        load_training_data(path)

    assert caught.value.line is None
    assert str(caught.value) == f"{path}: {caught.value.message}"
    assert fragment in caught.value.message


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="no such file or directory"):
        load_training_data(tmp_path / "absent.yml")


def test_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(TrainingDataError("nlu.yml", 3, "bad")))

    assert (error.path, error.line, error.message, str(error)) == ("nlu.yml", 3, "bad", "nlu.yml:3: bad")


def test_parse_annotated_offsets_with_several_entities() -> None:
    text, entities = parse_annotated(
        'fly [tomorrow](date) from [Berlin](city:BER) to [NYC]{"entity": "city", "value": "New York", '
        '"role": "destination", "group": "1"}, [sic] really'
    )

    assert text == "fly tomorrow from Berlin to NYC, [sic] really"
    assert entities == (
        EntitySpan("date", 4, 12, "tomorrow"),
        EntitySpan("city", 18, 24, "BER"),
        EntitySpan("city", 28, 31, "New York", role="destination", group="1"),
    )
    assert [text[span.start : span.end] for span in entities] == ["tomorrow", "Berlin", "NYC"]


def test_parse_annotated_counts_characters_not_bytes() -> None:
    text, entities = parse_annotated("我想查一下订单[KT-1028](order_id)的物流，寄到[上海](city)")

    assert text == "我想查一下订单KT-1028的物流，寄到上海"
    assert entities == (EntitySpan("order_id", 7, 14, "KT-1028"), EntitySpan("city", 20, 22, "上海"))
    assert [text[span.start : span.end] for span in entities] == ["KT-1028", "上海"]


def test_parse_annotated_json_may_contain_braces_and_brackets() -> None:
    text, entities = parse_annotated('set [it]{"entity": "template", "value": "{x} [y]"} now')

    assert (text, entities) == ("set it now", (EntitySpan("template", 4, 6, "{x} [y]"),))


@pytest.mark.parametrize(
    ("annotated", "fragment"),
    [
        ("to [Rome(city)", "unbalanced '[' at column 4"),
        ("to Rome] ok", "unbalanced ']' at column 8"),
        ("[a [b](c)", "another '[' at column 4"),
        ("to [Rome](city", "unbalanced '('"),
        ('to [Rome]{"entity": city}', "bad entity JSON at column 21"),
        ('to [Rome]{"entity": "city"', "bad entity JSON"),
        ('to [Rome]{"value": "Roma"}', "has no 'entity'"),
        ('to [Rome]{"entity": "city", "rol": "to"}', "unknown key 'rol'"),
        ('to [Rome]{"entity": "city", "group": 1}', "'group' in entity JSON at column 10 must be a string"),
        ("to [Rome]()", "no entity name"),
        ("to [Rome](city:)", "empty value"),
        ("to [](city)", "empty entity text"),
    ],
)
def test_parse_annotated_rejects_bad_markup(annotated: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_annotated(annotated)

    assert fragment in str(caught.value)


def test_training_data_merged_and_filter() -> None:
    greet = Example("hi", "greet")
    order = Example("where is KT-1028", "track_order", (EntitySpan("order_id", 9, 16, "KT-1028"),))
    first = TrainingData([greet], {"nyc": "New York"}, [RegexPattern("order_id", "KT-\\d+")], {"city": ["Berlin"]})
    second = TrainingData([order], {"nyc": "NYC", "sf": "San Francisco"}, [], {"city": ["Paris"], "size": ["L"]})

    merged = first.merged(second)

    assert merged.examples == [greet, order]
    assert merged.synonyms == {"nyc": "NYC", "sf": "San Francisco"}
    assert merged.regexes == first.regexes
    assert merged.lookups == {"city": ["Berlin", "Paris"], "size": ["L"]}
    assert first.lookups == {"city": ["Berlin"]}  # the originals are untouched
    assert merged.entity_names() == ["order_id"]

    only_orders = merged.filter(lambda example: example.intent == "track_order")

    assert only_orders.examples == [order]
    assert only_orders.intents() == ["track_order"]
    assert (only_orders.synonyms, only_orders.regexes, only_orders.lookups) == (
        merged.synonyms,
        merged.regexes,
        merged.lookups,
    )


def test_empty_and_unrelated_yaml_files_load_as_nothing(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yml", "")
    domain = write(tmp_path / "domain.yml", "version: '3.1'\nintents:\n- greet\nentities:\n- city\nnlu:\n")

    data = load_training_data(empty, domain)

    assert (data.examples, data.synonyms, data.regexes, data.lookups) == ([], {}, [], {})
