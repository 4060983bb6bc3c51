"""The NLU's rule-based components, one by one: entities, synonyms, the fallback, the config checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.components import (
    BuiltinEntityExtractor,
    Context,
    EntitySynonymMapper,
    FallbackClassifier,
    Message,
    RegexEntityExtractor,
    Tokenizer,
    resolve_overlaps,
)
from nlu.errors import NluError
from nlu.pipeline import LanguagePipeline, load_config
from nlu.result import FALLBACK_INTENT, Entity, IntentScore
from nlu.training_data import Example, RegexPattern, TrainingData, parse_annotated

CONTEXT = Context(language="en", encoder=None)


def entities(component: object, text: str, language: str = "en") -> list[tuple[str, object, str]]:
    message = Message(text, language)
    component.process(message)  # type: ignore[attr-defined]
    return [(e.entity, e.value, text[e.start : e.end]) for e in resolve_overlaps(message.entities)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my email is Anna.Li+shop@Example.co.uk, thanks", [("email", "anna.li+shop@example.co.uk",
                                                             "Anna.Li+shop@Example.co.uk")]),
        ("call me on +44 7700 900123 please", [("phone", "+447700900123", "+44 7700 900123")]),
        ("我的手机号是13812345678", [("phone", "+8613812345678", "13812345678")]),
        ("landline 020 7946 0018", [("phone", "+442079460018", "020 7946 0018")]),
        ("order KT-1028 never arrived", [("order_id", "KT-1028", "KT-1028")]),
        ("refund £12.50 and $1,200 please", [("amount", {"amount": 12.5, "currency": "GBP"}, "£12.50"),
                                            ("amount", {"amount": 1200.0, "currency": "USD"}, "$1,200")]),
        ("退我50元", [("amount", {"amount": 50.0, "currency": "CNY"}, "50元")]),
        # Chinese characters are word characters to Python's regex: they must not stick to an address or order.
        ("邮箱是zhao.min@example.cn帮我绑定", [("email", "zhao.min@example.cn", "zhao.min@example.cn")]),
        ("订单KT-1028的物流", [("order_id", "KT-1028", "KT-1028")]),
        ("it cost 30 euros", [("amount", {"amount": 30.0, "currency": "EUR"}, "30 euros")]),
        # Numbers that are not phone numbers, amounts or orders.
        ("I ordered 3 cups in 2024, on 2024-03-01, paid 12.50", []),
        ("ring 555-1234", []),
    ],
)
def test_builtin_entities(text: str, expected: list[tuple[str, object, str]]) -> None:
    assert entities(BuiltinEntityExtractor({}, CONTEXT), text) == expected


def test_builtin_dimensions_can_be_limited() -> None:
    extractor = BuiltinEntityExtractor({"dimensions": ["email"]}, CONTEXT)
    assert entities(extractor, "a@b.com KT-1028 +44 7700 900123") == [("email", "a@b.com", "a@b.com")]


def annotated(markup: str, intent: str) -> Example:
    text, spans = parse_annotated(markup)
    return Example(text, intent, spans)


def test_regex_and_lookup_entities_with_synonyms() -> None:
    text, spans = parse_annotated('I\'d like the [free shipping]{"entity": "reward", "value": "Free shipping voucher"}')
    data = TrainingData(
        examples=[Example(text, "redeem_reward", spans),
                  annotated("track [KT-1028](order_id)", "ask_question"),
                  annotated("switch to [中文](language)", "change_language")],
        synonyms={"free shipping": "Free shipping voucher", "中文": "zh", "chinese": "zh"},
        regexes=[RegexPattern("order_id", r"\b[A-Z]{2,3}-\d{3,8}\b"), RegexPattern("zipcode", r"\d{5}")],
        lookups={"reward": ["Free shipping voucher", "free shipping", "免运费券"], "language": ["中文", "Chinese"]},
    )
    regex = RegexEntityExtractor({}, CONTEXT)
    regex.train(data, [])
    mapper = EntitySynonymMapper({}, CONTEXT)
    mapper.train(data, [])

    def run(text: str) -> list[tuple[str, object, str]]:
        message = Message(text, "en")
        regex.process(message)
        message.entities = resolve_overlaps(message.entities)
        mapper.process(message)
        return [(e.entity, e.value, text[e.start : e.end]) for e in message.entities]

    assert run("can I get FREE SHIPPING for order KT-2001?") == [
        ("reward", "Free shipping voucher", "FREE SHIPPING"), ("order_id", "KT-2001", "KT-2001")]
    assert run("我想换免运费券") == [("reward", "免运费券", "免运费券")]
    assert run("please speak chinese") == [("language", "zh", "chinese")]
    # A regex no example annotates is a feature in Rasa, not an entity: 12345 is no "zipcode".
    assert run("my code is 12345") == []
    # Lookup words match whole words only: "Chinesey" is not "Chinese".
    assert run("Chinesey food") == []


def test_tokenizer_offsets_in_both_languages() -> None:
    tokenizer = Tokenizer({}, CONTEXT)
    for text, language, words in [
        ("Where's my parcel?", "en", ["Where", "'", "s", "my", "parcel", "?"]),
        ("我的积分还有多少", "zh", ["我", "的", "积分", "还有", "多少"]),
    ]:
        message = Message(text, language)
        tokenizer.process(message)
        assert [text[a:b] for a, b in message.tokens] == words


def ranked(*scores: tuple[str, float]) -> Message:
    message = Message("x", "en")
    message.ranking = [IntentScore(name, p) for name, p in scores]
    return message


@pytest.mark.parametrize(
    ("scores", "fallback"),
    [
        ((("greet", 0.9), ("thanks", 0.05)), False),
        ((("greet", 0.29), ("thanks", 0.05)), True),  # below the threshold
        ((("greet", 0.45), ("thanks", 0.40)), True),  # ambiguous: closer than 0.1
        ((("greet", 0.45), ("thanks", 0.34)), False),
    ],
)
def test_fallback_threshold_and_ambiguity(scores: tuple[tuple[str, float], ...], fallback: bool) -> None:
    message = ranked(*scores)
    FallbackClassifier({"threshold": 0.3, "ambiguity_threshold": 0.1}, CONTEXT).process(message)
    assert (message.intent.name == FALLBACK_INTENT) is fallback
    if fallback:  # Rasa's shape: nlu_fallback on top at the threshold, the classifier's ranking kept below
        assert message.intent.confidence == 0.3
        assert [s.name for s in message.ranking[1:]] == [name for name, _ in scores]


def test_overlapping_entities_keep_the_longest_of_each_name() -> None:
    found = [Entity("order_id", 6, 13, "KT-1028", "a"), Entity("order_id", 6, 13, "KT-1028", "b"),
             Entity("reward", 0, 4, "tea", "a"), Entity("reward", 0, 9, "tea cups", "a")]
    assert [(e.entity, e.start, e.end) for e in resolve_overlaps(found)] == [("reward", 0, 9), ("order_id", 6, 13)]


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "config.yml"
    bad.write_text("pipeline:\n  - name: Tokenizer\n  - name: DIETClassifier\n", encoding="utf-8")
    with pytest.raises(NluError, match="unknown component 'DIETClassifier'"):
        load_config(bad)
    bad.write_text("pipeline: [Tokenizer]\n", encoding="utf-8")
    with pytest.raises(NluError, match="list of components"):
        load_config(bad)
    config = {"pipeline": [{"name": "FallbackClassifier", "treshold": 0.5}]}
    with pytest.raises(NluError, match=r"unknown option.*treshold"):
        LanguagePipeline("en", config, encoder=None)


def test_the_default_config_loads() -> None:
    names = [c["name"] for c in load_config()["pipeline"]]
    assert names[:3] == ["Tokenizer", "SentenceFeaturizer", "MLPIntentClassifier"]
    assert "FallbackClassifier" in names
