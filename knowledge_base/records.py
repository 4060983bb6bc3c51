"""The shapes the knowledge base works with: what ingestion produces, what the index holds, what search returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Decision = Literal["answer", "suggest", "no_answer"]


@dataclass(frozen=True)
class ArticleDraft:
    """One article as read from an import file (or typed by an agent), before it is stored."""

    question: str
    answer: str
    alt_questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    language: str | None = None  # None: detected from the text
    external_id: str | None = None
    status: str = "published"


@dataclass(frozen=True)
class RowError:
    """A rejected row of an import file: its line (1-based, physical line in the file) and why."""

    line: int
    reason: str
    source: str = ""  # the file, for a folder of Markdown files


class IndexableArticle(Protocol):
    """What the index needs of a stored article (crm_store's ArticleView has these attributes)."""

    id: int
    external_id: str | None
    language: str
    question: str
    alt_questions: tuple[str, ...]
    answer: str
    tags: tuple[str, ...]
    version: int


@dataclass(frozen=True)
class Hit:
    article_id: int
    external_id: str | None
    question: str
    answer: str
    language: str
    score: float  # the fused ranking score
    confidence: float  # calibrated: how likely this hit is the right answer (0..1)
    matched_text: str = ""  # the question or phrasing that matched best


@dataclass(frozen=True)
class SearchResult:
    query: str
    language: str
    decision: Decision
    hits: tuple[Hit, ...]  # ranked, best first
    suggestions: tuple[Hit, ...] = ()  # up to 3 "did you mean" when the decision is suggest
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> Hit | None:
        return self.hits[0] if self.hits else None


@dataclass(frozen=True)
class GlossaryTerm:
    """A domain term of one knowledge base and the words customers use for it (edited by admins).

    The tokenizer keeps `term` whole, and each synonym is read as the term before matching ("武夷岩茶王" → "大红袍",
    "parcel" → "package"). crm_store's glossary rows are exposed to the knowledge base in this shape."""

    term: str
    synonyms: tuple[str, ...] = ()
    language: str = "zh"  # "zh" or "en"
