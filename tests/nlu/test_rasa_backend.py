"""RasaBackend's failures: each becomes one NluBackendError naming the URL, never an httpx exception.

The successful parse is tested against a real Rasa server in test_rasa_server.py; a fake transport stands in
here only for the failures a real server cannot be made to show on demand.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from nlu.errors import NluBackendError, NluError
from nlu.rasa_backend import RasaBackend

URL = "http://rasa.test:5005"
PARSE_URL = f"{URL}/model/parse"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backend_answering(handler: Callable[[httpx.Request], httpx.Response]) -> RasaBackend:
    return RasaBackend(URL + "/", timeout_s=0.5, transport=httpx.MockTransport(handler))


def raise_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def raise_protocol_error(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)


FAILURES = [
    pytest.param(raise_timeout, "did not answer within 0.5 s", id="timeout"),
    pytest.param(raise_protocol_error, "RemoteProtocolError: Server disconnected", id="protocol-error"),
    pytest.param(
        lambda request: httpx.Response(500, text="Traceback (most recent call last):\n  ...\nValueError: boom"),
        "answered HTTP 500: Traceback (most recent call last): ... ValueError: boom",
        id="http-500",
    ),
    pytest.param(
        lambda request: httpx.Response(404, json={"status": "failure"}),
        "answered HTTP 404 (was it started with --enable-api?)",
        id="http-404-no-api",
    ),
    pytest.param(
        lambda request: httpx.Response(200, text="<html>ok</html>"), "invalid JSON: <html>ok</html>", id="html"
    ),
    pytest.param(lambda request: httpx.Response(200, content=b"\xff\xfe\x00"), "invalid JSON", id="bytes"),
    pytest.param(lambda request: httpx.Response(200, json=["greet"]), "not a parse result", id="json-list"),
    pytest.param(lambda request: httpx.Response(200, json={"status": "ok"}), "not a parse result", id="no-intent"),
    pytest.param(
        lambda request: httpx.Response(200, json={"text": "hi", "intent": {"name": "greet", "confidence": "high"}}),
        "malformed parse result (ValueError",
        id="bad-confidence",
    ),
]


def assert_clean(error: NluBackendError, expected: str) -> None:
    message = str(error)
    assert message.startswith(f"Rasa server at {PARSE_URL} "), message
    assert expected in message
    assert "\n" not in message
    # No httpx exception shown behind it: callers (and their logs) see one line, not a chained traceback.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


@pytest.mark.parametrize(("handler", "expected"), FAILURES)
async def test_async_parse_failures(handler: Callable[[httpx.Request], httpx.Response], expected: str) -> None:
    backend = backend_answering(handler)
    try:
        with pytest.raises(NluBackendError) as caught:
            await backend.parse("where is my order KT-1028")
    finally:
        await backend.aclose()
    assert_clean(caught.value, expected)


@pytest.mark.parametrize(("handler", "expected"), FAILURES)
def test_sync_parse_failures(handler: Callable[[httpx.Request], httpx.Response], expected: str) -> None:
    backend = backend_answering(handler)
    try:
        with pytest.raises(NluBackendError) as caught:
            backend.parse_sync("我的积分还有多少")
    finally:
        backend.close()
    assert_clean(caught.value, expected)


async def test_nothing_listening_is_a_backend_error() -> None:
    """A real refused connection: no server on the port."""
    url = f"http://127.0.0.1:{free_port()}"
    backend = RasaBackend(url, timeout_s=2)
    try:
        with pytest.raises(NluError, match=rf"^Rasa server at {url}/model/parse is unreachable") as caught:
            await backend.parse("hello")
        with pytest.raises(NluBackendError, match=r"is unreachable \(is it running\?"):
            backend.parse_sync("hello")
    finally:
        await backend.aclose()
    assert isinstance(caught.value, NluBackendError)
    assert "\n" not in str(caught.value)


async def test_the_request_is_rasas_parse_call() -> None:
    """The backend posts {"text": ...} to {url}/model/parse; the failure path still reports it."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, text="Service Unavailable")

    backend = backend_answering(record)
    with pytest.raises(NluBackendError, match="answered HTTP 503: Service Unavailable"):
        await backend.parse("订单KT-1028到哪了")
    await backend.aclose()
    assert [(r.method, str(r.url)) for r in seen] == [("POST", PARSE_URL)]
    assert seen[0].headers["content-type"] == "application/json"
    assert json.loads(seen[0].content) == {"text": "订单KT-1028到哪了"}


def test_the_configured_backend_is_opened(tmp_path: Path) -> None:
    """KEFU_NLU_BACKEND=rasa gives the Rasa client at KEFU_NLU_RASA_URL; kefu loads the model (or says it's missing)."""
    from nlu.service import open_nlu
    from nlu.settings import NluSettings

    rasa = open_nlu(NluSettings(backend="rasa", rasa_url="http://127.0.0.1:5999/", rasa_timeout_s=2.5), encoders=None)
    assert isinstance(rasa, RasaBackend) and rasa.parse_url == "http://127.0.0.1:5999/model/parse"
    assert rasa.timeout_s == 2.5
    with pytest.raises(NluError, match="no NLU model here"):
        open_nlu(NluSettings(backend="kefu", model_dir=str(tmp_path / "none")), encoders=None)
