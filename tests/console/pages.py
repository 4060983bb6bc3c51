"""Reading console pages in tests: a section's table as rows of cell texts, the flash error."""

from __future__ import annotations

import html
import re


def table_rows(page: str, section_id: str) -> list[list[str]]:
    """The body rows of the first table in `<section id=section_id>`, each as its cells' text."""
    section = re.search(rf'<section[^>]*id="{section_id}".*?</section>', page, re.S)
    assert section, f"no section {section_id}"
    body = re.search(r"<tbody>(.*?)</tbody>", section.group(0), re.S)
    assert body, f"no table in {section_id}"
    return [[" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)]


def flash_error(page: str) -> str:
    match = re.search(r'<div class="flash flash-error" role="alert">(.*?)</div>', page, re.S)
    assert match, "no error shown"
    return html.unescape(match.group(1))
