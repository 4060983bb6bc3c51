"""Which language a message or an article is written in: "zh" or "en", decided by the share of Chinese characters."""

from __future__ import annotations

import re

# CJK Unified Ideographs and their extensions (A, B-F...), compatibility ideographs; kana and hangul are not Chinese.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# Any letter in any script (Han ideographs included): word characters that are neither digits nor "_".
_LETTER = re.compile(r"[^\W\d_]")

ZH_SHARE = 0.3  # Chinese when at least this share of the letters are Han ideographs


def detect_language(text: str, *, zh_share: float = ZH_SHARE) -> str:
    """Return "zh" when Han ideographs make up at least `zh_share` of the letters in `text`, else "en"."""
    han = len(_HAN.findall(text))
    if not han:
        return "en"
    # One Han character carries roughly a word's worth of meaning, so even 30% of the letters is a Chinese sentence
    # with some English words in it ("我的points还有多少"), not the other way round.
    return "zh" if han >= zh_share * len(_LETTER.findall(text)) else "en"
