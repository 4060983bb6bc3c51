"""Markdown answers and lessons as the chats show them: Telegram's HTML subset (checked by the fake Bot API
server's own parser, which answers as Telegram does) and safe HTML for the web chat."""

from __future__ import annotations

import pytest

from bot.markdown import to_html, to_telegram_html
from tests.fake_telegram import TelegramError, _html_plain_text

LESSON = """# Water and temperature

Green tea likes **80 °C** water, *never* boiling; black tea ~~cold~~ 95 °C.

1. Warm the pot
2. Add 3 g of leaves
   - per 150 ml

> Tip: taste at `2:30`.

```
steep(3)
```

See [our guide](https://tea.example/guide?a=1&b=2) and ![a pot](https://tea.example/pot.png).
5 < 6 & 7 > 3"""


def test_a_lesson_becomes_telegram_html_that_telegram_accepts() -> None:
    html = to_telegram_html(LESSON)
    plain = _html_plain_text(html)  # raises as Telegram would on a tag it does not know or an unclosed one
    assert html.startswith("<b>Water and temperature</b>\n\n")
    assert "<b>80 °C</b>" in html and "<i>never</i>" in html and "<s>cold</s>" in html
    assert "1. Warm the pot\n2. Add 3 g of leaves\n  • per 150 ml" in html
    assert "<blockquote>Tip: taste at <code>2:30</code>.</blockquote>" in html
    assert "<pre>steep(3)</pre>" in html
    assert '<a href="https://tea.example/guide?a=1&amp;b=2">our guide</a>' in html
    assert '<a href="https://tea.example/pot.png">a pot</a>' in html
    assert "5 &lt; 6 &amp; 7 &gt; 3" in html
    assert "**" not in plain and "#" not in plain


@pytest.mark.parametrize("text", [
    "<script>alert(1)</script>", "[click](javascript:alert(1))", "<b>unclosed", "a_b*c`d", "",
])
def test_hostile_or_odd_markdown_stays_inert(text: str) -> None:
    html = to_telegram_html(text)
    try:
        _html_plain_text(html)
    except TelegramError as exc:  # pragma: no cover - the assertion explains
        raise AssertionError(f"Telegram would refuse {html!r}: {exc}") from exc
    web = to_html(text)
    assert "<script" not in html and "<script" not in web
    assert 'href="javascript' not in html and 'href="javascript' not in web


def test_the_web_chat_gets_html_with_lists_and_links() -> None:
    web = to_html(LESSON)
    assert "<h1>Water and temperature</h1>" in web and "<strong>80 °C</strong>" in web
    assert "<ol>" in web and '<a href="https://tea.example/guide?a=1&amp;b=2">our guide</a>' in web
