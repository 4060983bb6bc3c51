"""Markdown (KB answers, lessons) for the chats: Telegram's small HTML subset, and safe HTML for the web chat.

markdown-it-py parses (CommonMark, raw HTML off: a `<script>` in an article is shown, never run; `javascript:`
links are refused by its link validator); Telegram gets only the tags its `parse_mode=HTML` knows (b, i, s, code,
pre, a, blockquote): headings become bold lines, list items bullets, images links.
"""

from __future__ import annotations

import functools
from html import escape

from markdown_it import MarkdownIt
from markdown_it.token import Token

INLINE_TAGS = {"strong": "b", "em": "i", "s": "s"}


@functools.cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("strikethrough")


def to_html(text: str) -> str:
    """The web chat's HTML of a Markdown text (safe to put in the page)."""
    return _parser().render(text).strip()


def to_telegram_html(text: str) -> str:
    """The Markdown text as Telegram HTML (`parse_mode="HTML"`)."""
    out: list[str] = []
    lists: list[list[int]] = []  # per open list: [next number] or [-1] for bullets
    for token in _parser().parse(text):
        kind = token.type
        if kind == "inline":
            out.append(_inline(token.children or []))
        elif kind == "heading_open":
            out.append("<b>")
        elif kind == "heading_close":
            out.append("</b>\n\n")
        elif kind == "paragraph_close":
            out.append("\n" if lists else "\n\n")
        elif kind == "bullet_list_open":
            lists.append([-1])
        elif kind == "ordered_list_open":
            lists.append([int(token.attrGet("start") or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
            if not lists:
                out.append("\n")
        elif kind == "list_item_open":
            counter = lists[-1]
            indent = "  " * (len(lists) - 1)
            if counter[0] < 0:
                out.append(f"{indent}• ")
            else:
                out.append(f"{indent}{counter[0]}. ")
                counter[0] += 1
        elif kind in ("fence", "code_block"):
            out.append(f"<pre>{escape(token.content.rstrip(), quote=False)}</pre>\n\n")
        elif kind == "blockquote_open":
            out.append("<blockquote>")
        elif kind == "blockquote_close":
            while out and out[-1].endswith("\n"):  # no blank line inside the quote
                out[-1] = out[-1].rstrip("\n")
                if out[-1]:
                    break
                out.pop()
            out.append("</blockquote>\n\n")
        elif kind == "hr":
            out.append("———\n\n")
    return "".join(out).strip()


def _inline(children: list[Token]) -> str:
    out: list[str] = []
    for child in children:
        kind = child.type
        if kind == "text":
            out.append(escape(child.content, quote=False))
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind == "code_inline":
            out.append(f"<code>{escape(child.content, quote=False)}</code>")
        elif kind.endswith("_open") and kind[:-5] in INLINE_TAGS:
            out.append(f"<{INLINE_TAGS[kind[:-5]]}>")
        elif kind.endswith("_close") and kind[:-6] in INLINE_TAGS:
            out.append(f"</{INLINE_TAGS[kind[:-6]]}>")
        elif kind == "link_open":
            out.append(f'<a href="{escape(str(child.attrGet("href") or ""), quote=True)}">')
        elif kind == "link_close":
            out.append("</a>")
        elif kind == "image":
            src = escape(str(child.attrGet("src") or ""), quote=True)
            out.append(f'<a href="{src}">{escape(child.content or src, quote=False)}</a>')
    return "".join(out)
