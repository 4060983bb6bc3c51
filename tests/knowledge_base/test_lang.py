"""Language detection: Chinese when Han ideographs make up at least 30% of the letters, English otherwise."""

from __future__ import annotations

import pytest

from knowledge_base.lang import ZH_SHARE, detect_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "en"),
        ("   \n\t", "en"),
        ("How many points do I have?", "en"),
        ("我的积分还有多少？", "zh"),
        ("我的points还有多少", "zh"),
        ("怎么用PayPal付款", "zh"),
        ("Please ship it to 北京 tomorrow morning", "en"),
        ("12345 !!! ??", "en"),
        ("👍👍 123", "en"),
        ("👍好的", "zh"),
        ("？！。，", "en"),  # CJK punctuation alone is not Chinese text
        ("ありがとうございます", "en"),  # kana are not Han ideographs
        ("𠀀𠀁", "zh"),  # CJK extension B, outside the Basic Multilingual Plane
        ("订单A1234退款了吗？", "zh"),
    ],
)
def test_detect_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_threshold_is_the_share_of_han_among_letters() -> None:
    assert ZH_SHARE == 0.3
    assert detect_language("中中中abcdefg") == "zh"  # 3 of 10 letters
    assert detect_language("中中abcdefgh") == "en"  # 2 of 10 letters
    assert detect_language("中中 1 2 3 4 abcd") == "zh"  # digits and spaces do not count: 2 of 6 letters


def test_threshold_can_be_given() -> None:
    assert detect_language("中abcdefghi", zh_share=0.1) == "zh"
    assert detect_language("中中abc", zh_share=0.5) == "en"
