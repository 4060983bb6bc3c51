"""What the NLU raises: one base class, so callers can fall back on any NLU failure."""

from __future__ import annotations


class NluError(Exception):
    """Any failure of the NLU."""


class NluBackendError(NluError):
    """The NLU backend (e.g. a Rasa server) could not be reached or gave an unusable answer."""
