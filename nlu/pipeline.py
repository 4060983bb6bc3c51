"""Train, persist, load and run the NLU: one pipeline per language, on that language's shared sentence encoder.

English examples train on all-MiniLM-L6-v2's layer features, Chinese ones on multilingual-e5-small's vector (the
knowledge base's encoders, so the bot encodes each message once for both). A message is parsed by the pipeline of
its detected language.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from knowledge_base.lang import detect_language
from knowledge_base.search import QueryEncoding
from nlu.components import COMPONENTS, Component, Context, Message, Progress, resolve_overlaps
from nlu.errors import NluError
from nlu.result import ParseResult
from nlu.training_data import TrainingData

DEFAULT_CONFIG = Path(__file__).with_name("config.yml")
DEFAULT_DATA = Path(__file__).with_name("data")
FORMAT_VERSION = 1


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """A Rasa-style config file: `pipeline:` a list of `{name: Component, option: value}`."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise NluError(f"{path}: cannot read the NLU config: {exc}") from exc
    pipeline = config.get("pipeline") if isinstance(config, dict) else None
    if not isinstance(pipeline, list) or not all(isinstance(c, dict) and "name" in c for c in pipeline):
        raise NluError(f"{path}: 'pipeline' must be a list of components, each with a 'name'")
    for component in pipeline:
        if component["name"] not in COMPONENTS:
            raise NluError(f"{path}: unknown component {component['name']!r} (known: {', '.join(COMPONENTS)})")
    return config


def split_by_language(data: TrainingData) -> dict[str, TrainingData]:
    languages = sorted({detect_language(e.text) for e in data.examples})
    return {lang: data.filter(lambda e, lang=lang: detect_language(e.text) == lang) for lang in languages}


def fingerprint(data: TrainingData) -> str:
    digest = hashlib.sha256()
    for e in data.examples:
        digest.update(f"{e.intent}\t{e.text}\n".encode())
    digest.update(json.dumps([data.synonyms, [(r.name, r.pattern) for r in data.regexes], data.lookups],
                             sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


class LanguagePipeline:
    """The components of one language, in order."""

    def __init__(self, language: str, config: dict[str, Any], encoder: Any, progress: Progress | None = None) -> None:
        self.language = language
        self.config = config
        self.context = Context(language=language, encoder=encoder, progress=progress or (lambda _: None))
        self.components: list[Component] = [COMPONENTS[c["name"]](c, self.context) for c in config["pipeline"]]

    def train(self, data: TrainingData) -> None:
        messages = [Message(e.text, self.language) for e in data.examples]
        for component in self.components:
            self.context.progress(f"[{self.language}] training {component.name}")
            component.train(data, messages)

    def process(self, message: Message) -> Message:
        for component in self.components:
            component.process(message)
        message.entities = resolve_overlaps(message.entities)
        return message

    def persist(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for component in self.components:
            component.persist(directory)

    def load(self, directory: Path) -> None:
        for component in self.components:
            component.load(directory)


@dataclass
class NluModel:
    """A trained NLU: a pipeline per language, and what it was trained on."""

    pipelines: dict[str, LanguagePipeline]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted(self.pipelines)

    @property
    def intents(self) -> list[str]:
        return sorted({i for lang in self.metadata.get("languages", {}).values() for i in lang.get("intents", [])})

    @classmethod
    def train(
        cls, data: TrainingData, *, encoders: Any, config: dict[str, Any] | None = None,
        progress: Progress | None = None, languages: Sequence[str] | None = None,
        caches: dict[str, dict[str, Any]] | None = None,
    ) -> NluModel:
        """encoders: knowledge_base.service.Encoders (for_language). caches: per-language encoding caches kept by
        the caller across trainings (cross-validation encodes each text once)."""
        config = config or load_config()
        say = progress or (lambda _: None)
        parts = split_by_language(data)
        if languages:
            parts = {lang: d for lang, d in parts.items() if lang in languages}
        if not parts:
            raise NluError("no training examples")
        pipelines, described = {}, {}
        for language, part in parts.items():
            started = time.perf_counter()
            encoder = encoders.for_language(language)
            pipeline = LanguagePipeline(language, config, encoder, say)
            if caches is not None:
                pipeline.context.cache = caches.setdefault(language, {})
            say(f"[{language}] {len(part.examples)} examples, {len(part.intents())} intents")
            pipeline.train(part)
            pipelines[language] = pipeline
            described[language] = {
                "encoder": encoder.name, "examples": len(part.examples), "intents": part.intents(),
                "train_s": round(time.perf_counter() - started, 2),
            }
        metadata = {
            "format": FORMAT_VERSION, "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "fingerprint": fingerprint(data), "config": config, "languages": described,
        }
        return cls(pipelines, metadata)

    def persist(self, directory: str | Path) -> Path:
        """Write the model to `directory` atomically: a half-written model never replaces a good one."""
        target = Path(directory)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for language, pipeline in self.pipelines.items():
            pipeline.persist(staging / language)
        (staging / "metadata.json").write_text(json.dumps(self.metadata, indent=2, ensure_ascii=False), "utf-8")
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return target

    @classmethod
    def load(cls, directory: str | Path, *, encoders: Any) -> NluModel:
        directory = Path(directory)
        try:
            metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NluError(f"{directory}: no NLU model here; train one with `kefu nlu train`") from None
        except (OSError, ValueError) as exc:
            raise NluError(f"{directory}: unreadable NLU model ({exc}); train it again") from exc
        if metadata.get("format") != FORMAT_VERSION:
            raise NluError(f"{directory}: model format {metadata.get('format')} is not {FORMAT_VERSION}; retrain it")
        pipelines = {}
        for language, described in metadata["languages"].items():
            encoder = encoders.for_language(language)
            if encoder.name != described["encoder"]:
                raise NluError(f"{directory}: the {language} model was trained on {described['encoder']}, "
                               f"but the encoder now is {encoder.name}; retrain it")
            pipeline = LanguagePipeline(language, metadata["config"], encoder)
            pipeline.load(directory / language)
            pipelines[language] = pipeline
        return cls(pipelines, metadata)

    def parse(self, text: str, *, encoding: QueryEncoding | None = None) -> ParseResult:
        """Intent ranking, entities and language of one message; `encoding` is the bot's shared encoding of it."""
        started = time.perf_counter()
        language = encoding.language if encoding is not None else detect_language(text)
        if language not in self.pipelines:  # a language without training data: the other one's model
            language = self.languages[0]
        pipeline = self.pipelines[language]
        message = Message(text, language)
        if (encoding is not None and encoding.text == text and encoding.language == language
                and encoding.features is not None and encoding.model == pipeline.context.encoder.name):
            message.vector, message.features = encoding.vector, encoding.features
        pipeline.process(message)
        return ParseResult(
            text=text, intent=message.intent, intent_ranking=tuple(message.ranking),
            entities=tuple(message.entities), language=language, text_tokens=tuple(message.tokens),
            timings_ms={"total": (time.perf_counter() - started) * 1000},
        )
