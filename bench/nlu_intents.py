"""Intent classification on Banking77 (train -> test) and CLINC150 (train + oos_train -> val + oos_val).

    .venv/bin/python bench/nlu_intents.py                       # both
    .venv/bin/python bench/nlu_intents.py --dataset clinc150

Kefu's NLU is trained with its default config (nlu/config.yml) and parses each test message one at a time, the
sentence embedding included, as the bot does. Compared in the same run with a TF-IDF (word 1-2 + char 2-5 grams)
+ logistic-regression baseline. Prints one JSON object on stdout; progress on stderr.

Banking77 has no out-of-scope queries: its accuracy is the classifier's best intent (the usual protocol), and
the accuracy after Kefu's fallback is reported beside it. CLINC150: in-scope accuracy counts a fallback or an
"oos" answer to an in-scope query as wrong; out-of-scope recall counts either as right; both at the config's
fallback thresholds, plus a sweep of thresholds to show the trade-off.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
OOS = "oos"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3)}


def load(dataset: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    if dataset == "banking77":
        def rows(name: str) -> list[tuple[str, str]]:
            with (SHARED / "banking77" / name).open(encoding="utf-8", newline="") as f:
                return [(r["text"], r["category"]) for r in csv.DictReader(f)]

        return rows("train.csv"), rows("test.csv")
    data = json.loads((SHARED / "clinc150" / "data_full_train_val.json").read_text(encoding="utf-8"))
    return [tuple(r) for r in data["train"] + data["oos_train"]], [tuple(r) for r in data["val"] + data["oos_val"]]  # type: ignore[misc]


def baseline(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> tuple[dict, np.ndarray, list[str]]:
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    texts, labels = [t for t, _ in train], [y for _, y in train]
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(texts)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2).fit(texts)

    def features(batch: list[str]):  # type: ignore[no-untyped-def]
        return hstack([words.transform(batch), chars.transform(batch)]).tocsr()

    classifier = LogisticRegression(C=10.0, max_iter=2000).fit(features(texts), labels)
    train_s = time.perf_counter() - started
    latencies, probabilities = [], []
    for text, _ in test:
        t0 = time.perf_counter()
        probabilities.append(classifier.predict_proba(features([text]))[0])
        latencies.append((time.perf_counter() - t0) * 1000)
    return {"train_s": round(train_s, 2), "parse_ms": percentiles(latencies)}, np.array(probabilities), list(
        classifier.classes_
    )


def metrics(gold: list[str], predicted: list[str], dataset: str) -> dict[str, float]:
    from sklearn.metrics import f1_score

    out = {"accuracy": round(float(np.mean([g == p for g, p in zip(gold, predicted, strict=True)])), 4),
           "macro_f1": round(float(f1_score(gold, predicted, labels=sorted(set(gold)), average="macro",
                                            zero_division=0)), 4)}
    if dataset == "clinc150":
        inscope = [(g, p) for g, p in zip(gold, predicted, strict=True) if g != OOS]
        oos = [p for g, p in zip(gold, predicted, strict=True) if g == OOS]
        out["in_scope_accuracy"] = round(float(np.mean([g == p for g, p in inscope])), 4)
        out["oos_recall"] = round(float(np.mean([p in (OOS, "nlu_fallback") for p in oos])), 4)
    return out


def with_fallback(probabilities: np.ndarray, classes: list[str], threshold: float, ambiguity: float) -> list[str]:
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    best = probabilities.argmax(axis=1)
    fallback = (top2[:, 1] < threshold) | (top2[:, 1] - top2[:, 0] < ambiguity)
    return ["nlu_fallback" if f else classes[b] for f, b in zip(fallback, best, strict=True)]


def run(dataset: str) -> dict:
    from knowledge_base.service import Encoders
    from knowledge_base.settings import KbSettings
    from nlu.pipeline import NluModel, load_config
    from nlu.training_data import Example, TrainingData

    train, test = load(dataset)
    gold = [y for _, y in test]
    say(f"{dataset}: {len(train)} training, {len(test)} test examples")
    config = load_config()
    fallback = next(c for c in config["pipeline"] if c["name"] == "FallbackClassifier")
    threshold, ambiguity = float(fallback.get("threshold", 0.3)), float(fallback.get("ambiguity_threshold", 0.1))

    encoders = Encoders(KbSettings())
    encoders.for_language("en").encode_queries(["warm up"])
    data = TrainingData(examples=[Example(t, y) for t, y in train], synonyms={}, regexes=[], lookups={})
    started = time.perf_counter()
    model = NluModel.train(data, encoders=encoders, config=config, progress=say)
    train_s = time.perf_counter() - started
    say(f"trained in {train_s:.0f} s; parsing {len(test)} messages one at a time")
    pipeline = model.pipelines["en"]
    classifier = next(c for c in pipeline.components if c.name == "MLPIntentClassifier")
    latencies, top, final, probabilities = [], [], [], []
    for text, _ in test:
        t0 = time.perf_counter()
        result = model.parse(text)
        latencies.append((time.perf_counter() - t0) * 1000)
        final.append(result.intent.name)
        top.append(next(s.name for s in result.intent_ranking if s.name != "nlu_fallback"))
    # Every class's probability for the sweep, from the same features (batched: not timed).
    features = np.stack([pipeline.context.cache[t][1] if t in pipeline.context.cache
                         else encoders.for_language("en").encode_with_features([t])[1][0] for t, _ in test])
    probabilities = classifier.probabilities(features)  # type: ignore[attr-defined]
    classes = classifier.intents  # type: ignore[attr-defined]

    kefu = {
        "train_s": round(train_s, 2), "parse_ms": percentiles(latencies),
        "top_intent": metrics(gold, top, dataset), "with_fallback": metrics(gold, final, dataset),
        "fallback": {"threshold": threshold, "ambiguity_threshold": ambiguity},
    }
    base_info, base_p, base_classes = baseline(train, test)
    base = {**base_info, "top_intent": metrics(gold, [base_classes[i] for i in base_p.argmax(1)], dataset),
            "with_fallback": metrics(gold, with_fallback(base_p, base_classes, threshold, ambiguity), dataset)}
    out = {"dataset": dataset, "train": len(train), "test": len(test), "kefu": kefu, "tfidf_logreg": base}
    if dataset == "clinc150":
        sweep = []
        for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            m = metrics(gold, with_fallback(probabilities, classes, t, ambiguity), dataset)
            b = metrics(gold, with_fallback(base_p, base_classes, t, ambiguity), dataset)
            sweep.append({"threshold": t, "kefu": {k: m[k] for k in ("in_scope_accuracy", "oos_recall")},
                          "tfidf_logreg": {k: b[k] for k in ("in_scope_accuracy", "oos_recall")}})
        out["threshold_sweep"] = {"ambiguity_threshold": ambiguity, "points": sweep}
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["banking77", "clinc150", "all"], default="all")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    datasets = ["banking77", "clinc150"] if args.dataset == "all" else [args.dataset]
    print(json.dumps({"results": [run(d) for d in datasets]}))


if __name__ == "__main__":
    main()
