"""A knowledge base's own vocabulary: domain terms kept whole, and the words customers use for them read as the term.

Nothing here names a shop's products: the terms come from the glossary admins edit (crm_store's glossary, or
`kefu kb glossary import`), and reach the tokenizers of the knowledge base that owns them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from knowledge_base.records import GlossaryTerm

Tokenizer = Callable[[str], list[str]]


class Glossary:
    """One language's terms: `apply(text)` rewrites every synonym to its term (longest first, case-insensitive)."""

    def __init__(self, terms: Iterable[GlossaryTerm] = (), *, language: str = "zh") -> None:
        self.language = language
        self.terms: tuple[str, ...] = ()
        self._map: dict[str, str] = {}
        kept: list[str] = []
        for entry in terms:
            term = entry.term.strip()
            if entry.language != language or not term:
                continue
            kept.append(term)
            for synonym in entry.synonyms:
                synonym = synonym.strip().lower()
                if synonym and synonym != term.lower():
                    self._map.setdefault(synonym, term)
        self.terms = tuple(dict.fromkeys(kept))
        # Longest first, so "武夷岩茶王" is read before "岩茶王"; English synonyms only match whole words.
        alternatives = sorted(self._map, key=len, reverse=True)
        if language == "en":
            pattern = "|".join(rf"\b{re.escape(s)}\b" for s in alternatives)
        else:
            pattern = "|".join(re.escape(s) for s in alternatives)
        self._pattern = re.compile(pattern, re.IGNORECASE) if alternatives else None

    def __bool__(self) -> bool:
        return bool(self.terms or self._map)

    @property
    def key(self) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        """What the glossary changes in tokenization (two glossaries with the same key tokenize alike)."""
        return self.terms, tuple(sorted(self._map.items()))

    @property
    def digest(self) -> str:
        """'' without synonyms; else a short key of them (what the encoder reads depends on it)."""
        if not self._map:
            return ""
        import hashlib

        return "|glossary:" + hashlib.sha256(repr(sorted(self._map.items())).encode()).hexdigest()[:12]

    def apply(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._map[m.group(0).lower()], text)

    def terms_in(self, text: str) -> frozenset[str]:
        """The terms a text names, directly or through a synonym."""
        if not self.terms:
            return frozenset()
        applied = self.apply(text).lower()
        return frozenset(t for t in self.terms if t.lower() in applied)

    def wrap(self, tokenizer: Tokenizer) -> Tokenizer:
        """The tokenizer reading synonyms as their terms (itself when the glossary changes nothing)."""
        if self._pattern is None:
            return tokenizer
        return lambda text: tokenizer(self.apply(text))


def glossaries(terms: Sequence[GlossaryTerm], languages: Iterable[str]) -> dict[str, Glossary]:
    return {language: Glossary(terms, language=language) for language in languages}
