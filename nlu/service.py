"""The NLU as the bot sees it: `parse(text, encoding=...)`, from Kefu's model or a Rasa server (KEFU_NLU_BACKEND)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from knowledge_base.search import QueryEncoding
from nlu.pipeline import NluModel
from nlu.result import ParseResult
from nlu.settings import NluSettings

DEFAULT_MODEL_DIR = Path("var/nlu-model")


class Nlu(Protocol):
    name: str

    async def parse(self, text: str, *, encoding: QueryEncoding | None = None) -> ParseResult: ...

    async def aclose(self) -> None: ...


class LocalNlu:
    """Kefu's own pipeline, in process; it reuses the message's shared encoding when given one."""

    name = "kefu"

    def __init__(self, model: NluModel) -> None:
        self.model = model

    async def parse(self, text: str, *, encoding: QueryEncoding | None = None) -> ParseResult:
        return self.model.parse(text, encoding=encoding)

    async def aclose(self) -> None:
        pass


def model_dir(settings: NluSettings) -> Path:
    return Path(settings.model_dir) if settings.model_dir else DEFAULT_MODEL_DIR


def open_nlu(settings: NluSettings, *, encoders: Any) -> Nlu:
    """The configured backend. Raises NluError when Kefu's model is missing or was trained on another encoder."""
    if settings.backend == "rasa":
        from nlu.rasa_backend import RasaBackend

        return RasaBackend(settings.rasa_url, timeout_s=settings.rasa_timeout_s)
    return LocalNlu(NluModel.load(model_dir(settings), encoders=encoders))
