"""Process-wide Prometheus metrics (the default registry) and the log context that tags lines with a conversation.

Import-cheap on purpose (prometheus_client only): the bot, the console, the worker and the store all record here,
and each process exposes its own registry on /metrics (kefu.ops).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "DELIVERY_IN_DOUBT",
    "DELIVERY_SECONDS",
    "HANDLE_SECONDS",
    "HANDOFFS",
    "MESSAGES_IN",
    "MESSAGES_OUT",
    "RETRY_AFTER",
    "STORE_UNAVAILABLE",
    "STREAM_LAG",
    "STREAM_PENDING",
    "UPDATES_STORED",
    "conversation_id_var",
    "log_context",
]

conversation_id_var: ContextVar[int | None] = ContextVar("kefu_conversation_id", default=None)


@contextmanager
def log_context(*, conversation_id: int | None) -> Iterator[None]:
    """Tag every log line written inside the block (and the tasks it starts) with this conversation."""
    token = conversation_id_var.set(conversation_id)
    try:
        yield
    finally:
        conversation_id_var.reset(token)


# Handling one customer message spans a cache hit (a few ms) to NLU + KB search + a slow database (seconds).
_HANDLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Delivery includes the channel's own latency and any Retry-After wait.
_DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

MESSAGES_IN = Counter("kefu_messages_in", "Customer messages received.", ["channel"])
MESSAGES_OUT = Counter(
    "kefu_messages_out", "Messages sent to customers; outcome is sent, failed or duplicate_skipped.",
    ["channel", "sender", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "kefu_handle_seconds", "Time to handle one customer message.", ["channel"], buckets=_HANDLE_BUCKETS,
)
DELIVERY_SECONDS = Histogram(
    "kefu_delivery_seconds", "From an agent reply being stored to the channel accepting it.", ["channel"],
    buckets=_DELIVERY_BUCKETS,
)
HANDOFFS = Counter("kefu_handoffs", "Conversations handed to an agent.", ["reason"])
RETRY_AFTER = Counter("kefu_retry_after", "429 (Retry-After) answers honoured.")
DELIVERY_IN_DOUBT = Counter(
    "kefu_delivery_in_doubt", "Sends whose outcome is unknown (the channel may or may not have accepted them).",
)
UPDATES_STORED = Counter(
    "kefu_updates_stored", "Inbound channel updates stored; outcome is new or duplicate.", ["channel", "outcome"],
)
STORE_UNAVAILABLE = Counter(
    "kefu_store_unavailable", "Times the database or Redis could not be reached.", ["where"],
)
# Set by the process that reads the streams (before /metrics renders), not computed here: a collector would have
# to call Redis synchronously from the scrape.
STREAM_LAG = Gauge(
    "kefu_stream_lag", "Entries in the stream not yet delivered to the consumer group.", ["stream", "group"],
)
STREAM_PENDING = Gauge(
    "kefu_stream_pending", "Entries delivered to the consumer group but not yet acknowledged.", ["stream", "group"],
)
