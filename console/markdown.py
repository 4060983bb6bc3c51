"""Markdown for the console's previews (KB answers): CommonMark with raw HTML off, so an article's `<script>` or
`<img onerror>` is shown as text, never run; markdown-it refuses `javascript:` links, and images stay out (the
console's CSP would block remote ones anyway)."""

from __future__ import annotations

import functools

from markdown_it import MarkdownIt
from markupsafe import Markup


@functools.cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("strikethrough").disable("image")


def to_safe_html(text: str) -> Markup:
    """The text rendered as HTML that is safe to put in a console page."""
    return Markup(_parser().render(text))  # markdown-it escapes every piece of the source text
