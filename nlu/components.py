"""The NLU pipeline's components, after Rasa's lifecycle: config `defaults`, `train`, `process`, `persist`, `load`.

tokenizer -> features (the shared sentence encoder's layers) -> intent classifier -> fallback -> entities.
Components run in order on a `Message`; in training each sees the training messages as the components before it
left them (tokens, features), like Rasa's graph.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nlu.errors import NluError
from nlu.result import FALLBACK_INTENT, Entity, IntentScore
from nlu.training_data import TrainingData

Progress = Callable[[str], None]


@dataclass
class Message:
    """One text on its way through the pipeline."""

    text: str
    language: str
    tokens: list[tuple[int, int]] = field(default_factory=list)
    vector: np.ndarray | None = None  # the shared sentence vector (the knowledge base's)
    features: np.ndarray | None = None  # the classifier's input
    ranking: list[IntentScore] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)

    @property
    def intent(self) -> IntentScore:
        return self.ranking[0] if self.ranking else IntentScore(FALLBACK_INTENT, 0.0)


@dataclass
class Context:
    """What components share: the language, the shared encoder, a cache of encodings, progress output."""

    language: str
    encoder: Any  # knowledge_base.encoder.Encoder
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    progress: Progress = lambda _: None


class Component:
    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: dict[str, Any], context: Context) -> None:
        unknown = set(config) - set(self.defaults) - {"name"}
        if unknown:
            raise NluError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}")
        self.config = {**self.defaults, **{k: v for k, v in config.items() if k != "name"}}
        self.context = context

    def train(self, data: TrainingData, messages: list[Message]) -> None:
        """Learn from the training data; then process the training messages for the components after this one."""
        for message in messages:
            self.process(message)

    def process(self, message: Message) -> None:
        raise NotImplementedError

    def persist(self, directory: Path) -> None:
        pass

    def load(self, directory: Path) -> None:
        pass


# --- tokenizer ---------------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class Tokenizer(Component):
    """Whitespace and punctuation for English; jieba for Chinese (its own offsets)."""

    name = "Tokenizer"
    defaults: ClassVar[dict[str, Any]] = {}

    def process(self, message: Message) -> None:
        if message.language == "zh":
            import jieba

            message.tokens = [(start, end) for word, start, end in jieba.tokenize(message.text) if word.strip()]
        else:
            message.tokens = [m.span() for m in _WORD.finditer(message.text)]


# --- features ----------------------------------------------------------------------------------------------------


class SentenceFeaturizer(Component):
    """The shared sentence encoder: its layer features where it exposes them (MiniLM), else its vector (e5).

    A message that arrives already encoded (the bot encodes each message once, for the KB and the NLU) is used as
    it is; training texts are encoded in batches and cached for cross-validation.
    """

    name = "SentenceFeaturizer"
    defaults: ClassVar[dict[str, Any]] = {"batch_size": 32}

    def train(self, data: TrainingData, messages: list[Message]) -> None:
        encoder = self.context.encoder
        todo = sorted({m.text for m in messages if m.features is None and m.text not in self.context.cache})
        if todo:
            self.context.progress(f"encoding {len(todo)} texts with {encoder.name}")
            vectors, features = _encode(encoder, todo, batch_size=int(self.config["batch_size"]))
            self.context.cache.update(zip(todo, zip(vectors, features, strict=True), strict=True))
        for message in messages:
            self.process(message)

    def process(self, message: Message) -> None:
        if message.features is not None:
            return
        cached = self.context.cache.get(message.text)
        if cached is None:
            vectors, features = _encode(self.context.encoder, [message.text], batch_size=1)
            cached = (vectors[0], features[0])
        message.vector, message.features = cached


def _encode(encoder: Any, texts: list[str], *, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(encoder, "encode_with_features"):
        return encoder.encode_with_features(texts, batch_size=batch_size)
    vectors = encoder.encode_queries(texts) if len(texts) == 1 else encoder.encode_documents(texts)
    return vectors, vectors


def feature_dim(encoder: Any) -> int:
    return int(getattr(encoder, "feature_dim", encoder.dim))


# --- intent classifier -------------------------------------------------------------------------------------------


class MLPIntentClassifier(Component):
    """A one-hidden-layer perceptron over the standardised features (trained with torch, run with numpy).

    Chosen on Banking77 and CLINC150 (bench/nlu_banking77.py, bench/nlu_clinc150.py): over MiniLM's layer
    features it beats logistic regression by ~0.5-1 point; dropout on the input and label smoothing keep it from
    over-trusting 10-100 examples per intent.
    """

    name = "MLPIntentClassifier"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": 1024, "epochs": 30, "min_steps": 600, "batch_size": 64, "learning_rate": 1e-3,
        "weight_decay": 0.01, "input_dropout": 0.2, "dropout": 0.3, "label_smoothing": 0.1, "seed": 0,
        "ranking_length": 10,
    }

    def __init__(self, config: dict[str, Any], context: Context) -> None:
        super().__init__(config, context)
        self.intents: list[str] = []
        self.params: dict[str, np.ndarray] = {}
        self._folded: tuple[np.ndarray, np.ndarray] | None = None

    def train(self, data: TrainingData, messages: list[Message]) -> None:
        import torch

        labelled = [(m, intent) for m, intent in zip(messages, _intents(data), strict=True)]
        self.intents = sorted({intent for _, intent in labelled})
        if len(self.intents) < 2:
            raise NluError(f"{self.context.language}: at least two intents are needed, found {self.intents}")
        index = {name: i for i, name in enumerate(self.intents)}
        x = np.stack([m.features for m, _ in labelled]).astype(np.float32)  # type: ignore[misc]
        y = np.array([index[intent] for _, intent in labelled])
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        cfg = self.config
        torch.manual_seed(int(cfg["seed"]))
        generator = torch.Generator().manual_seed(int(cfg["seed"]))
        inputs = torch.from_numpy((x - mean) / std)
        targets = torch.from_numpy(y)
        hidden = int(cfg["hidden"])
        layers: list[torch.nn.Module] = [torch.nn.Dropout(float(cfg["input_dropout"]))]
        if hidden:
            layers += [torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(), torch.nn.Dropout(float(cfg["dropout"])),
                       torch.nn.Linear(hidden, len(self.intents))]
        else:
            layers += [torch.nn.Linear(x.shape[1], len(self.intents))]
        net = torch.nn.Sequential(*layers)
        batch = int(cfg["batch_size"])
        batches = math.ceil(len(x) / batch)
        epochs = max(int(cfg["epochs"]), math.ceil(int(cfg["min_steps"]) / batches))
        optimizer = torch.optim.AdamW(net.parameters(), lr=float(cfg["learning_rate"]),
                                      weight_decay=float(cfg["weight_decay"]))
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(cfg["learning_rate"]),
                                                       total_steps=epochs * batches)
        for epoch in range(epochs):
            net.train()
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for at in range(0, len(x), batch):
                rows = order[at : at + batch]
                loss = torch.nn.functional.cross_entropy(net(inputs[rows]), targets[rows],
                                                         label_smoothing=float(cfg["label_smoothing"]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(rows)
            if (epoch + 1) % max(1, epochs // 5) == 0:
                self.context.progress(f"intent classifier: epoch {epoch + 1}/{epochs}, loss {total / len(x):.4f}")
        linear = [m for m in net if isinstance(m, torch.nn.Linear)]
        self._folded = None
        self.params = {"mean": mean, "std": std}
        for i, layer in enumerate(linear):
            self.params[f"w{i}"] = layer.weight.detach().numpy().T.copy()
            self.params[f"b{i}"] = layer.bias.detach().numpy().copy()
        for message in messages:
            self.process(message)

    def _first_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """The first layer with the standardisation folded in: ((x - mean) / std) @ w + b == x @ w' + b'."""
        if self._folded is None:
            w, mean, std = self.params["w0"], self.params["mean"], self.params["std"]
            self._folded = ((w / std[:, None]).astype(np.float32), (self.params["b0"] - (mean / std) @ w).astype(
                np.float32))
        return self._folded

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Softmax over the intents for a batch (rows) of features."""
        w0, b0 = self._first_layer()
        h = np.atleast_2d(features).astype(np.float32, copy=False) @ w0 + b0
        if "w1" in self.params:
            h = _gelu(h) @ self.params["w1"] + self.params["b1"]
        h = h - h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return e / e.sum(axis=1, keepdims=True)

    def process(self, message: Message) -> None:
        if message.features is None:
            raise NluError("MLPIntentClassifier needs features: put SentenceFeaturizer before it")
        p = self.probabilities(message.features)[0]
        top = np.argsort(-p)[: int(self.config["ranking_length"])]
        message.ranking = [IntentScore(self.intents[i], float(p[i])) for i in top]

    def persist(self, directory: Path) -> None:
        np.savez(directory / "mlp.npz", **self.params)
        (directory / "intents.json").write_text(json.dumps(self.intents, ensure_ascii=False), encoding="utf-8")

    def load(self, directory: Path) -> None:
        with np.load(directory / "mlp.npz") as arrays:
            self.params = {k: arrays[k] for k in arrays.files}
        self._folded = None
        self.intents = json.loads((directory / "intents.json").read_text(encoding="utf-8"))


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch's default (exact) GELU: x * Phi(x)."""
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _intents(data: TrainingData) -> list[str]:
    return [e.intent for e in data.examples]


class FallbackClassifier(Component):
    """Rasa's FallbackClassifier: `nlu_fallback` when the best intent is below `threshold`, or when the two best
    are closer than `ambiguity_threshold`. The fallback's confidence is the threshold, as in Rasa; the ranking
    keeps the classifier's own scores below it."""

    name = "FallbackClassifier"
    defaults: ClassVar[dict[str, Any]] = {"threshold": 0.3, "ambiguity_threshold": 0.1}

    def process(self, message: Message) -> None:
        ranking = message.ranking
        if not ranking:
            return
        best = ranking[0].confidence
        runner_up = ranking[1].confidence if len(ranking) > 1 else 0.0
        if best < float(self.config["threshold"]) or best - runner_up < float(self.config["ambiguity_threshold"]):
            message.ranking = [IntentScore(FALLBACK_INTENT, float(self.config["threshold"])), *ranking]


# --- entities ----------------------------------------------------------------------------------------------------


def _pattern_for_words(words: Sequence[str]) -> str:
    """A case-insensitive alternation of lookup elements, longest first; word boundaries only around Latin text."""
    parts = []
    for word in sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True):
        escaped = re.escape(word)
        if re.match(r"\w", word[0], re.ASCII):
            escaped = r"\b" + escaped
        if re.match(r"\w", word[-1], re.ASCII):
            escaped = escaped + r"\b"
        parts.append(escaped)
    return "|".join(parts)


class RegexEntityExtractor(Component):
    """Entities from the training data's `regex` and `lookup` blocks, named after the block (as Rasa's)."""

    name = "RegexEntityExtractor"
    defaults: ClassVar[dict[str, Any]] = {"use_regexes": True, "use_lookup_tables": True, "case_sensitive": False}

    def __init__(self, config: dict[str, Any], context: Context) -> None:
        super().__init__(config, context)
        self.patterns: list[tuple[str, str]] = []
        self._compiled: list[tuple[str, re.Pattern[str]]] = []

    def train(self, data: TrainingData, messages: list[Message]) -> None:
        entities = set(data.entity_names())
        patterns = []
        if self.config["use_regexes"]:
            patterns += [(r.name, r.pattern) for r in data.regexes]
        if self.config["use_lookup_tables"]:
            patterns += [(name, _pattern_for_words(words)) for name, words in sorted(data.lookups.items()) if words]
        # Rasa extracts only entities the examples annotate; a regex used only as a feature stays a feature.
        self.patterns = [(name, p) for name, p in patterns if name in entities]
        self._compile()

    def _compile(self) -> None:
        flags = 0 if self.config["case_sensitive"] else re.IGNORECASE
        self._compiled = [(name, re.compile(pattern, flags)) for name, pattern in self.patterns]

    def process(self, message: Message) -> None:
        for name, pattern in self._compiled:
            for match in pattern.finditer(message.text):
                if match.end() > match.start():
                    message.entities.append(Entity(name, match.start(), match.end(), match.group(0), self.name,
                                                   match.group(0)))

    def persist(self, directory: Path) -> None:
        (directory / "regex_entities.json").write_text(json.dumps(self.patterns, ensure_ascii=False), encoding="utf-8")

    def load(self, directory: Path) -> None:
        self.patterns = [tuple(p) for p in json.loads((directory / "regex_entities.json").read_text("utf-8"))]  # type: ignore[misc]
        self._compile()


# ASCII only: Python's \w matches Chinese characters, and 邮箱是a@b.cn is an address after three Chinese ones.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
)
_CURRENCY = {"$": "USD", "usd": "USD", "£": "GBP", "gbp": "GBP", "€": "EUR", "eur": "EUR", "¥": "CNY", "￥": "CNY",
             "cny": "CNY", "rmb": "CNY", "元": "CNY", "块": "CNY", "块钱": "CNY", "人民币": "CNY", "美元": "USD",
             "英镑": "GBP", "欧元": "EUR", "pounds": "GBP", "pound": "GBP", "dollars": "USD", "dollar": "USD",
             "euros": "EUR", "euro": "EUR"}
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_AMOUNT = re.compile(
    rf"(?P<pre>[$£€¥￥]|\b(?:USD|GBP|EUR|CNY|RMB)\s?)(?P<n1>{_NUMBER})"
    rf"|(?P<n2>{_NUMBER})\s?(?P<post>块钱|人民币|美元|英镑|欧元|元|块|(?:USD|GBP|EUR|CNY|RMB|pounds?|dollars?|euros?)\b)",
    re.IGNORECASE,
)


class BuiltinEntityExtractor(Component):
    """E-mails, phone numbers (libphonenumber, normalised to E.164), amounts of money and order numbers."""

    name = "BuiltinEntityExtractor"
    defaults: ClassVar[dict[str, Any]] = {
        "dimensions": ["email", "phone", "amount", "order_id"],
        "phone_regions": ["GB", "CN", "US"],  # numbers without a country code are tried in these, in order
        "order_id_pattern": r"(?<![A-Za-z0-9-])[A-Z]{2,3}-\d{3,8}(?![A-Za-z0-9-])",  # also in 订单KT-1028的
    }

    def __init__(self, config: dict[str, Any], context: Context) -> None:
        super().__init__(config, context)
        self._order = re.compile(str(self.config["order_id_pattern"]))

    def train(self, data: TrainingData, messages: list[Message]) -> None:
        pass  # nothing to learn; the training messages need no entities for what follows

    def process(self, message: Message) -> None:
        dims = set(self.config["dimensions"])
        text = message.text
        found: list[Entity] = []
        if "email" in dims:
            found += [Entity("email", m.start(), m.end(), m.group(0).lower(), self.name, m.group(0))
                      for m in _EMAIL.finditer(text)]
        if "order_id" in dims:
            found += [Entity("order_id", m.start(), m.end(), m.group(0).upper(), self.name, m.group(0))
                      for m in self._order.finditer(text)]
        taken = [(e.start, e.end) for e in found]
        if "phone" in dims:
            found += [e for e in self._phones(text) if not _overlaps((e.start, e.end), taken)]
            taken = [(e.start, e.end) for e in found]
        if "amount" in dims:
            found += [e for e in self._amounts(text) if not _overlaps((e.start, e.end), taken)]
        message.entities.extend(found)

    def _phones(self, text: str) -> list[Entity]:
        """Valid numbers; and possible ones that look deliberate (international, or 10+ digits), since customers
        also type numbers libphonenumber does not know as assigned (new ranges, test numbers)."""
        import phonenumbers

        seen: dict[tuple[int, int], Entity] = {}
        for region in self.config["phone_regions"]:
            for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
                span = (match.start, match.end)
                if span in seen or _overlaps(span, list(seen)):
                    continue
                digits = sum(ch.isdigit() for ch in match.raw_string)
                deliberate = (match.raw_string.startswith(("+", "00")) and digits >= 8) or digits >= 10
                if digits < 8 or not (deliberate or phonenumbers.is_valid_number(match.number)):
                    continue
                value = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
                seen[span] = Entity("phone", match.start, match.end, value, self.name, match.raw_string)
        return list(seen.values())

    def _amounts(self, text: str) -> list[Entity]:
        out = []
        for m in _AMOUNT.finditer(text):
            number = m.group("n1") or m.group("n2")
            unit = (m.group("pre") or m.group("post") or "").strip().lower()
            value = {"amount": float(number.replace(",", "")), "currency": _CURRENCY.get(unit, unit.upper())}
            out.append(Entity("amount", m.start(), m.end(), value, self.name, m.group(0)))
        return out


def _overlaps(span: tuple[int, int], others: Sequence[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)


class EntitySynonymMapper(Component):
    """Maps an entity's value to its canonical form with the training data's synonyms (case-insensitive)."""

    name = "EntitySynonymMapper"

    def __init__(self, config: dict[str, Any], context: Context) -> None:
        super().__init__(config, context)
        self.synonyms: dict[str, str] = {}

    def train(self, data: TrainingData, messages: list[Message]) -> None:
        self.synonyms = {k.casefold(): v for k, v in data.synonyms.items()}

    def process(self, message: Message) -> None:
        message.entities = [
            _replace(e, self.synonyms[e.value.casefold()])
            if isinstance(e.value, str) and e.value.casefold() in self.synonyms else e
            for e in message.entities
        ]

    def persist(self, directory: Path) -> None:
        (directory / "synonyms.json").write_text(json.dumps(self.synonyms, ensure_ascii=False), encoding="utf-8")

    def load(self, directory: Path) -> None:
        self.synonyms = json.loads((directory / "synonyms.json").read_text(encoding="utf-8"))


def _replace(entity: Entity, value: str) -> Entity:
    from dataclasses import replace

    return replace(entity, value=value)


def resolve_overlaps(entities: Sequence[Entity]) -> list[Entity]:
    """One entity per span and name: duplicates from several extractors, and spans inside a longer one of the
    same entity, are dropped; the result is in text order."""
    kept: list[Entity] = []
    for e in sorted(entities, key=lambda e: (-(e.end - e.start), e.start)):
        if any(k.entity == e.entity and k.start <= e.start and e.end <= k.end for k in kept):
            continue
        kept.append(e)
    return sorted(kept, key=lambda e: (e.start, e.end, e.entity))


COMPONENTS: dict[str, type[Component]] = {
    c.name: c for c in (Tokenizer, SentenceFeaturizer, MLPIntentClassifier, FallbackClassifier,
                        RegexEntityExtractor, BuiltinEntityExtractor, EntitySynonymMapper)
}
