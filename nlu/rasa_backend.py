"""The NLU backend for KEFU_NLU_BACKEND=rasa: a running Rasa 3 server's `POST /model/parse`."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import httpx

from knowledge_base.lang import detect_language
from nlu.errors import NluBackendError
from nlu.result import Entity, ParseResult


class RasaBackend:
    """Parses messages with a Rasa server started with `--enable-api` (scripts/rasa-server starts one)."""

    name = "rasa"

    def __init__(self, url: str, *, timeout_s: float = 5.0, transport: httpx.MockTransport | None = None) -> None:
        # `transport` replaces the network in tests; one MockTransport serves both the async and the sync client.
        self.url = url.rstrip("/")
        self.parse_url = f"{self.url}/model/parse"
        self.timeout_s = timeout_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._sync_client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"RasaBackend({self.url!r}, timeout_s={self.timeout_s})"

    async def parse(self, text: str, *, encoding: object = None) -> ParseResult:
        """Intent and entities of `text`; raises NluBackendError when the server fails. (`encoding`, the bot's
        shared encoding of the message, is of no use to Rasa, which featurizes on its own.)"""
        if self._client is None:  # created on first use, so it belongs to the loop that uses it
            self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport)
        started = time.perf_counter()
        try:
            response = await self._client.post(self.parse_url, json={"text": text})
        except httpx.HTTPError as exc:
            raise NluBackendError(self._failure(exc)) from None
        return self._result(text, response, started)

    def parse_sync(self, text: str) -> ParseResult:
        """`parse` for synchronous callers (CLI, scripts)."""
        if self._sync_client is None:
            self._sync_client = httpx.Client(timeout=self.timeout_s, transport=self._transport)
        started = time.perf_counter()
        try:
            response = self._sync_client.post(self.parse_url, json={"text": text})
        except httpx.HTTPError as exc:
            raise NluBackendError(self._failure(exc)) from None
        return self._result(text, response, started)

    async def aclose(self) -> None:
        """Close the connections (both clients)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.close()

    def close(self) -> None:
        """Close the synchronous client's connections."""
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None

    async def __aenter__(self) -> RasaBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _failure(self, exc: httpx.HTTPError) -> str:
        where = f"Rasa server at {self.parse_url}"
        if isinstance(exc, httpx.TimeoutException):
            return f"{where} did not answer within {self.timeout_s:g} s ({type(exc).__name__})"
        if isinstance(exc, httpx.ConnectError):
            return f"{where} is unreachable (is it running? scripts/rasa-server starts one): {_one_line(exc)}"
        return f"{where} failed: {type(exc).__name__}: {_one_line(exc)}"

    def _result(self, text: str, response: httpx.Response, started: float) -> ParseResult:
        where = f"Rasa server at {self.parse_url}"
        if not response.is_success:
            hint = " (was it started with --enable-api?)" if response.status_code in (403, 404, 405) else ""
            raise NluBackendError(f"{where} answered HTTP {response.status_code}{hint}: {_one_line(response.text)}")
        try:
            data: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise NluBackendError(f"{where} answered with invalid JSON: {_one_line(response.text)}") from None
        if not isinstance(data, dict) or "intent" not in data:
            raise NluBackendError(f"{where} answered JSON that is not a parse result: {_one_line(response.text)}")
        # Rasa's answer carries no language: Kefu's is decided by the message's script.
        data = {key: value for key, value in data.items() if key != "language"}
        try:
            result = ParseResult.from_rasa_json(data, language=detect_language(text))
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            raise NluBackendError(f"{where} answered a malformed parse result ({_one_line(detail)})") from None
        return dataclasses.replace(
            result,
            entities=_one_per_span(result.entities),
            timings_ms={"rasa": (time.perf_counter() - started) * 1000},
        )


def _one_per_span(entities: tuple[Entity, ...]) -> tuple[Entity, ...]:
    """One entity per (type, span): DIET and the RegexEntityExtractor both report an order number, for one."""
    kept: dict[tuple[str, int, int], Entity] = {}
    for entity in entities:
        key = (entity.entity, entity.start, entity.end)
        # The rule (a regex or lookup match) is the one to keep: it is exact where DIET guesses.
        if key not in kept or entity.extractor == "RegexEntityExtractor":
            kept[key] = entity
    return tuple(kept.values())


def _one_line(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
