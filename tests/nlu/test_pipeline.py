"""Kefu's NLU trained on its own data (nlu/data) with the real encoders: held-out customer phrases in English
and Chinese get their intent, entities come back with spans and canonical values, the model survives a
persist/load, and a message encoded once for the knowledge base parses the same as a fresh one.

The model trains once for the module (~1 min on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge_base.service import Encoders, KnowledgeBase, MemoryArticleStore
from knowledge_base.settings import KbSettings
from nlu.errors import NluError
from nlu.pipeline import NluModel
from nlu.result import FALLBACK_INTENT
from tests.nlu.kefu_phrases import (
    EN_ENTITY_PHRASES,
    EN_PHRASES,
    ZH_DELETE_ACCOUNT,
    ZH_ENTITY_PHRASES,
    ZH_HOURS,
    ZH_PHRASES,
    ZH_RETURNS,
)

# Held-out phrases the model must get right, per language (a few fair misses are allowed: the bot asks back).
MIN_ACCURACY = 0.85


@pytest.fixture(scope="module")
def model_dir(nlu_model_dir: Path) -> Path:
    return nlu_model_dir  # tests/conftest.py: trained once per session


@pytest.fixture(scope="module")
def model(model_dir: Path, encoders: Encoders) -> NluModel:
    return NluModel.load(model_dir, encoders=encoders)


def misses(model: NluModel, phrases: list[tuple[str, str]]) -> list[str]:
    out = []
    for text, intent in phrases:
        result = model.parse(text)
        if result.intent.name != intent:
            top = ", ".join(f"{s.name} {s.confidence:.2f}" for s in result.intent_ranking[:3])
            out.append(f"{text!r}: want {intent}, got {top}")
    return out


@pytest.mark.parametrize(("phrases", "language"), [(EN_PHRASES, "en"), (ZH_PHRASES, "zh")], ids=["en", "zh"])
def test_held_out_phrases_get_their_intent(model: NluModel, phrases: list[tuple[str, str]], language: str) -> None:
    assert {model.parse(text).language for text, _ in phrases} == {language}
    wrong = misses(model, phrases)
    accuracy = 1 - len(wrong) / len(phrases)
    assert accuracy >= MIN_ACCURACY, f"{language}: accuracy {accuracy:.3f}; misses:\n" + "\n".join(wrong)


@pytest.mark.parametrize(("text", "intent"), [
    (ZH_RETURNS, "ask_question"), (ZH_HOURS, "ask_question"), (ZH_DELETE_ACCOUNT, "privacy_request"),
])
def test_the_colloquial_messages_that_went_astray_get_their_intent(model: NluModel, text: str, intent: str) -> None:
    """Found by users of the demo: a returns question taken for an unsubscribe, opening hours for a greeting, an
    account deletion for an unsubscribe."""
    assert not misses(model, [(text, intent)])


def test_erasing_ones_data_and_opting_out_of_marketing_are_told_apart(model: NluModel) -> None:
    """The privacy flow and the unsubscribe do different things to a customer: every held-out phrase of either."""
    phrases = [(t, i) for t, i in EN_PHRASES + ZH_PHRASES if i in ("privacy_request", "unsubscribe")]
    assert len(phrases) >= 16
    wrong = misses(model, phrases)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("phrases", "language"), [(EN_ENTITY_PHRASES, "en"), (ZH_ENTITY_PHRASES, "zh")],
                         ids=["en", "zh"])
def test_entities_with_spans_and_canonical_values(model: NluModel, phrases: list[tuple[str, str, str]],
                                                  language: str) -> None:
    wrong = []
    for text, entity, value in phrases:
        result = model.parse(text)
        found = [e for e in result.entities if e.entity == entity]
        if not any(str(e.value) == value for e in found):
            wrong.append(f"{text!r}: want {entity}={value!r}, got {[(e.entity, e.value) for e in result.entities]}")
        for e in result.entities:
            assert text[e.start : e.end] == e.text, (text, e)
    assert not wrong, "\n".join(wrong)


def test_parse_json_has_rasa_shape(model: NluModel) -> None:
    out = model.parse("my parcel KT-1028 arrived broken, email me at anna@example.com").to_json()
    assert set(out) == {"text", "intent", "entities", "text_tokens", "intent_ranking", "language"}
    assert set(out["intent"]) == {"name", "confidence"}
    assert out["intent"]["name"] == "complaint"
    ranking = [r["confidence"] for r in out["intent_ranking"]]
    assert ranking == sorted(ranking, reverse=True) and 0 < ranking[0] <= 1
    by_name = {e["entity"]: e for e in out["entities"]}
    assert by_name["order_id"]["value"] == "KT-1028"
    assert by_name["email"]["value"] == "anna@example.com"
    assert {"start", "end", "extractor", "confidence_entity"} <= set(by_name["email"])
    json.dumps(out)  # serialisable as it is


def test_gibberish_and_off_topic_do_not_route_to_an_action(model: NluModel) -> None:
    routed = {"check_points", "check_tier", "points_history", "redeem_reward", "link_account", "unsubscribe",
              "privacy_request", "human_handoff", "start_course", "continue_course", "change_language", "complaint"}
    for text in ["asdfgh qwerty zxcv", "what is the capital of Peru", "写一首关于月亮的诗", "今天股市怎么样"]:
        result = model.parse(text)
        assert result.intent.name not in routed, (text, result.intent)


def test_a_message_encoded_once_for_the_kb_parses_the_same(model: NluModel, encoders: Encoders) -> None:
    kb = KnowledgeBase(MemoryArticleStore([]), KbSettings(), encoders=encoders)
    for text in ["how many points do I have", "我要找人工客服"]:
        encoding = kb.encode_query(text, with_features=True)
        assert encoding.features is not None
        shared, fresh = model.parse(text, encoding=encoding), model.parse(text)
        assert shared.intent.name == fresh.intent.name
        assert shared.intent.confidence == pytest.approx(fresh.intent.confidence, abs=1e-4)


def test_persisted_model_parses_like_the_trained_one(model_dir: Path, model: NluModel, encoders: Encoders) -> None:
    again = NluModel.load(model_dir, encoders=encoders)
    for text, _ in EN_PHRASES[:10] + ZH_PHRASES[:10]:
        a, b = model.parse(text), again.parse(text)
        assert a.intent == b.intent and a.entities == b.entities
    meta = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    assert set(meta["languages"]) == {"en", "zh"}
    assert "greet" in meta["languages"]["zh"]["intents"]


def test_a_model_for_another_encoder_or_none_at_all_is_refused(model_dir: Path, tmp_path: Path,
                                                               encoders: Encoders) -> None:
    with pytest.raises(NluError, match="no NLU model here"):
        NluModel.load(tmp_path / "missing", encoders=encoders)
    copy = tmp_path / "model"
    copy.mkdir()
    for path in model_dir.rglob("*"):
        target = copy / path.relative_to(model_dir)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            target.write_bytes(path.read_bytes())
    meta = json.loads((copy / "metadata.json").read_text(encoding="utf-8"))
    meta["languages"]["en"]["encoder"] = "st:some-other-model"
    (copy / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(NluError, match="retrain"):
        NluModel.load(copy, encoders=encoders)


def test_the_configured_fallback_threshold_applies(model_dir: Path, encoders: Encoders) -> None:
    """The same model with a stricter fallback: a message it is sure of stays, one it is unsure of falls back,
    with Rasa's shape (nlu_fallback on top at the threshold, the classifier's ranking below)."""
    strict = NluModel.load(model_dir, encoders=encoders)
    sure = strict.parse("how many points do I have").intent.confidence
    for pipeline in strict.pipelines.values():
        fallback = next(c for c in pipeline.components if c.name == "FallbackClassifier")
        fallback.config["threshold"] = sure + 0.01
    result = strict.parse("how many points do I have")
    assert result.intent.name == FALLBACK_INTENT
    assert result.intent.confidence == pytest.approx(sure + 0.01)
    assert result.intent_ranking[1].name == "check_points"
    assert result.intent_ranking[1].confidence == pytest.approx(sure, abs=1e-6)
