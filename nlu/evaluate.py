"""`rasa test nlu`'s report for Kefu's NLU: accuracy, macro-F1, per intent, the most confused pairs, predictions."""

from __future__ import annotations

import csv
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge_base.lang import detect_language
from nlu.components import Progress
from nlu.pipeline import NluModel
from nlu.training_data import Example, TrainingData


@dataclass(frozen=True)
class Prediction:
    text: str
    gold: str
    predicted: str  # nlu_fallback when the fallback fired
    confidence: float  # of the classifier's best intent, before the fallback
    language: str
    top: str = ""  # the classifier's best intent, before the fallback


def scores(predictions: Sequence[Prediction]) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_fscore_support

    if not predictions:
        return {"examples": 0}
    gold = [p.gold for p in predictions]
    predicted = [p.predicted for p in predictions]
    labels = sorted(set(gold))
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=labels, zero_division=0
    )
    confused = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    return {
        "examples": len(predictions),
        "accuracy": round(float(np.mean([g == p for g, p in zip(gold, predicted, strict=True)])), 4),
        "macro_f1": round(float(np.mean(f1)), 4),
        # What the classifier alone gets right, before the fallback turns unsure answers into nlu_fallback.
        "top_intent_accuracy": round(float(np.mean([p.gold == (p.top or p.predicted) for p in predictions])), 4),
        "fallback_rate": round(sum(p.predicted == "nlu_fallback" for p in predictions) / len(predictions), 4),
        "per_intent": {
            label: {"precision": round(float(pr), 4), "recall": round(float(rc), 4), "f1": round(float(f), 4),
                    "support": int(s)}
            for label, pr, rc, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confused": [{"gold": g, "predicted": p, "count": n} for (g, p), n in confused.most_common(10)],
    }


@dataclass
class Report:
    predictions: list[Prediction]
    seconds: float = 0.0
    folds: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = scores(self.predictions)
        by_language: dict[str, list[Prediction]] = defaultdict(list)
        for p in self.predictions:
            by_language[p.language].append(p)
        headline = ("examples", "accuracy", "macro_f1", "fallback_rate", "top_intent_accuracy")
        out["by_language"] = {
            lang: {k: v for k, v in scores(ps).items() if k in headline} for lang, ps in sorted(by_language.items())
        }
        if self.folds:
            out["cross_validation_folds"] = self.folds
        out["seconds"] = round(self.seconds, 2)
        return out

    def write_predictions(self, path: str | Path) -> None:
        with Path(path).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "intent", "predicted", "confidence", "language"])
            for p in self.predictions:
                writer.writerow([p.text, p.gold, p.predicted, f"{p.confidence:.6f}", p.language])


def predict(model: NluModel, examples: Sequence[Example]) -> list[Prediction]:
    out = []
    for example in examples:
        result = model.parse(example.text)
        top = next((s for s in result.intent_ranking if s.name != "nlu_fallback"), None)
        out.append(Prediction(example.text, example.intent, result.intent.name, top.confidence if top else 0.0,
                              result.language, top.name if top else ""))
    return out


def evaluate(model: NluModel, data: TrainingData) -> Report:
    started = time.perf_counter()
    return Report(predict(model, data.examples), time.perf_counter() - started)


def stratified_folds(examples: Sequence[Example], k: int, seed: int = 0) -> list[list[int]]:
    """k folds with each (language, intent)'s examples dealt round-robin after a seeded shuffle."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        groups[(detect_language(e.text), e.intent)].append(i)
    rng = random.Random(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for j, i in enumerate(members):
            folds[(offset + j) % k].append(i)
        offset += len(members)
    return folds


def cross_validate(
    data: TrainingData, k: int, *, encoders: Any, config: dict[str, Any] | None = None, seed: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Train on k-1 folds, predict the held-out one, k times; every example is predicted by a model that did not
    see it. Texts are encoded once for all folds (the encoder is frozen)."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    say = progress or (lambda _: None)
    started = time.perf_counter()
    caches: dict[str, dict[str, Any]] = {}
    predictions: list[Prediction | None] = [None] * len(data.examples)
    for n, fold in enumerate(stratified_folds(data.examples, k, seed), 1):
        held = set(fold)
        say(f"fold {n}/{k}: training on {len(data.examples) - len(held)}, testing {len(held)}")
        train = TrainingData(
            examples=[e for i, e in enumerate(data.examples) if i not in held], synonyms=data.synonyms,
            regexes=data.regexes, lookups=data.lookups,
        )
        model = NluModel.train(train, encoders=encoders, config=config, caches=caches)
        for i, prediction in zip(fold, predict(model, [data.examples[i] for i in fold]), strict=True):
            predictions[i] = prediction
    return Report([p for p in predictions if p is not None], time.perf_counter() - started, folds=k)
