"""What the NLU says about one message, in Rasa's `/model/parse` JSON shape (plus the language)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FALLBACK_INTENT = "nlu_fallback"


@dataclass(frozen=True)
class Entity:
    entity: str
    start: int  # character offsets into the message text, end exclusive
    end: int
    value: Any  # the canonical value: a synonym's target, a normalised phone number or amount
    extractor: str
    text: str = ""  # the message's own characters at start:end
    confidence: float = 1.0
    role: str | None = None
    group: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "entity": self.entity, "start": self.start, "end": self.end, "value": self.value,
            "extractor": self.extractor, "confidence_entity": round(self.confidence, 6),
        }
        if self.role:
            out["role"] = self.role
        if self.group:
            out["group"] = self.group
        return out


@dataclass(frozen=True)
class IntentScore:
    name: str
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "confidence": round(float(self.confidence), 6)}


@dataclass(frozen=True)
class ParseResult:
    text: str
    intent: IntentScore
    intent_ranking: tuple[IntentScore, ...] = ()
    entities: tuple[Entity, ...] = ()
    language: str = "en"
    text_tokens: tuple[tuple[int, int], ...] = ()
    backend: str = "kefu"
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def is_fallback(self) -> bool:
        return self.intent.name == FALLBACK_INTENT

    def entity_values(self, name: str) -> list[Any]:
        return [e.value for e in self.entities if e.entity == name]

    def to_json(self) -> dict[str, Any]:
        """Rasa's /model/parse response, with Kefu's "language" added."""
        return {
            "text": self.text,
            "intent": self.intent.to_json(),
            "entities": [e.to_json() for e in self.entities],
            "text_tokens": [list(t) for t in self.text_tokens],
            "intent_ranking": [s.to_json() for s in self.intent_ranking],
            "language": self.language,
        }

    @classmethod
    def from_rasa_json(cls, data: dict[str, Any], *, language: str = "en") -> ParseResult:
        """A Rasa server's /model/parse answer (intent may be null when the model has no intents)."""
        intent = data.get("intent") or {}
        entities = tuple(
            Entity(
                entity=str(e["entity"]), start=int(e.get("start", 0)), end=int(e.get("end", 0)),
                value=e.get("value"), extractor=str(e.get("extractor") or "rasa"),
                text=str(data.get("text", ""))[int(e.get("start", 0)) : int(e.get("end", 0))],
                confidence=float(e.get("confidence_entity", e.get("confidence", 1.0)) or 1.0),
                role=e.get("role"), group=e.get("group"),
            )
            for e in data.get("entities") or []
        )
        return cls(
            text=str(data.get("text", "")),
            intent=IntentScore(str(intent.get("name") or FALLBACK_INTENT), float(intent.get("confidence") or 0.0)),
            intent_ranking=tuple(
                IntentScore(str(r["name"]), float(r.get("confidence") or 0.0)) for r in data.get("intent_ranking") or []
            ),
            entities=entities,
            language=str(data.get("language") or language),
            text_tokens=tuple((int(a), int(b)) for a, b in data.get("text_tokens") or []),
            backend="rasa",
        )
