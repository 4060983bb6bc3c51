"""Chinese text for matching: normalisation, jieba words, character n-grams and overlap measures.

Language rules only: full-width forms, numbers, and a few colloquial spellings of question words (咋 → 怎么).
A knowledge base's own terms (product names, brand words) and their synonyms come from its glossary
(knowledge_base.glossary), never from this module. Dependency-light on purpose: the standard library and jieba
(imported and initialised lazily, once).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from typing import Any

__all__ = [
    "NEGATION",
    "STOP_WORDS",
    "char_ngrams",
    "containment",
    "dice",
    "jaccard",
    "normalize_zh",
    "tokenize_zh",
    "use_terms",
]

# Colloquial spellings of question words, read as the standard ones (longest first where one contains another).
# These are Mandarin, not any shop's vocabulary: domain synonyms belong in the knowledge base's glossary.
COLLOQUIAL: tuple[tuple[str, str], ...] = (
    ("为啥", "为什么"),
    ("咋样", "怎么样"),
    ("咋", "怎么"),
    ("如何", "怎么"),
    ("啥时候", "什么时候"),
    ("啥", "什么"),
    ("可不可以", "可以"),
    ("能不能", "能"),
    ("是不是", "是"),
    ("有没有", "有"),
)

_MASK = "#"  # numbers (and masked digits like ***) all become this one symbol
_NUMBER_RE = re.compile(r"\*{3}|\d+(?:[.,]\d+)*")
_COLLOQUIAL_RE = re.compile("|".join(re.escape(a) for a, _ in COLLOQUIAL))
_COLLOQUIAL_MAP = dict(COLLOQUIAL)
# Negation, looked for after normalisation (能不能, 是不是, 有没有 are questions, not negations: rewritten by then).
NEGATION = re.compile(r"不|没|无法|未|别")

STOP_WORDS: frozenset[str] = frozenset(
    "的 了 吗 呢 吧 啊 呀 么 嘛 哦 哈 啦 我 你 您 是 在 就 都 也 还 这 那 个 一下 请问 请 我的 你们 亲".split()
)

_jieba: Any = None
_jieba_lock = threading.Lock()
_terms: set[str] = set()  # the words the glossaries in use asked jieba to keep whole


def _tokenizer() -> Any:
    """jieba's default tokenizer, imported and initialised on first use (about 1 s), quietly."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                for term in sorted(_terms):
                    jieba.add_word(term)
                _jieba = jieba
    return _jieba


def use_terms(terms: Iterable[str]) -> None:
    """Keep these words whole (a glossary's terms); words an earlier glossary added and this one lacks are dropped."""
    wanted = {normalize_zh(t).strip() for t in terms if t and t.strip()}
    jieba = _tokenizer()
    with _jieba_lock:
        for term in sorted(_terms - wanted):
            jieba.del_word(term)
        for term in sorted(wanted - _terms):
            jieba.add_word(term)
        _terms.clear()
        _terms.update(wanted)


def normalize_zh(text: str) -> str:
    """NFKC (full-width → half-width), lower-case, numbers → '#', colloquial question words → standard ones."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _NUMBER_RE.sub(_MASK, text)
    return _COLLOQUIAL_RE.sub(lambda m: _COLLOQUIAL_MAP[m.group(0)], text)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == _MASK


def tokenize_zh(text: str, *, stop_words: bool = False, normalize: bool = True) -> list[str]:
    """jieba words of the (normalised) text; punctuation and whitespace dropped, latin lower-cased."""
    text = normalize_zh(text) if normalize else text.lower()
    words = [w.strip() for w in _tokenizer().lcut(text) if any(_is_word_char(ch) for ch in w)]
    if stop_words:
        words = [w for w in words if w not in STOP_WORDS]
    return words


def match_tokens_zh(text: str) -> list[str]:
    """The words matching compares: jieba words without stop words, plus the single characters of longer words.

    Customers and articles split the same idea differently (退货 / 退 / 退换货): the characters let 退货 meet 退换货."""
    words = tokenize_zh(text, stop_words=True)
    chars = [ch for w in words if len(w) > 1 and not w.isascii() for ch in w if ch not in STOP_WORDS]
    return words + chars


def char_ngrams(text: str, n: int, *, normalize: bool = True) -> list[str]:
    """Character n-grams over letters, digits and CJK characters (punctuation and spaces dropped).

    A text shorter than n gives itself as its only gram (so short questions still overlap)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    chars = [ch for ch in (normalize_zh(text) if normalize else text.lower()) if _is_word_char(ch)]
    if len(chars) < n:
        return ["".join(chars)] if chars else []
    return ["".join(chars[i : i + n]) for i in range(len(chars) - n + 1)]


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def dice(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    total = len(sa) + len(sb)
    return 2 * len(sa & sb) / total if total else 0.0


def containment(a: Iterable[str], b: Iterable[str]) -> float:
    """Share of the smaller set found in the other one (1.0 when one text is contained in the other)."""
    sa, sb = set(a), set(b)
    small = min(len(sa), len(sb))
    return len(sa & sb) / small if small else 0.0


def encoder_text_zh(text: str) -> str:
    """What the Chinese encoder embeds: the normalised text. Its name keys the cached vectors: rename it whenever
    normalize_zh changes what it produces, so stored vectors of the old normalisation are not reused."""
    return normalize_zh(text)
