"""Request-body size caps for Kefu's web apps (the web chat, the console), as one small ASGI middleware.

A body declared larger than its cap (Content-Length) is refused before a byte of it is read; a body sent without a
length (chunked) is counted as the app reads it, and once past the cap the app's answer is replaced by the refusal.
Each part of an app registers its own cap under a path prefix, and the longest matching prefix applies: the demo
serves the web chat (/webchat, small JSON) and the console (/, knowledge-base uploads of a few MB) on one app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What answers a refused request: given the request's scope and the cap in bytes, an ASGI app (a Response).
Refusal = Callable[[Scope, int], ASGIApp]


@dataclass(frozen=True)
class BodyCap:
    prefix: str  # "/webchat": that path and the paths under it; "/": every path
    max_bytes: int
    refusal: Refusal

    def covers(self, path: str) -> bool:
        return self.prefix == "/" or path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")


def limit_request_bodies(app: Starlette, *, prefix: str, max_bytes: int, refusal: Refusal) -> None:
    """Cap the request bodies of the paths under `prefix` at `max_bytes`; `refusal` answers the ones over it (413).
    Call before the app serves its first request."""
    caps: list[BodyCap] | None = getattr(app.state, "kefu_body_caps", None)
    if caps is None:
        app.state.kefu_body_caps = caps = []
        app.add_middleware(BodySizeLimit, caps=caps)
    caps.append(BodyCap(prefix, max_bytes, refusal))


class BodyTooLarge(Exception):
    """Raised into the app by `receive` once a body passes its cap (the app's own answer is then replaced)."""


class BodySizeLimit:
    """The ASGI middleware behind `limit_request_bodies`; `caps` may grow until the app starts."""

    def __init__(self, app: ASGIApp, *, caps: list[BodyCap]) -> None:
        self.app = app
        self.caps = caps

    def cap_for(self, path: str) -> BodyCap | None:
        covering = [cap for cap in self.caps if cap.covers(path)]
        return max(covering, key=lambda cap: len(cap.prefix), default=None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = self.cap_for(scope["path"]) if scope["type"] == "http" else None
        if cap is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > cap.max_bytes:
            await cap.refusal(scope, cap.max_bytes)(scope, receive, send)
            return
        received = 0
        exceeded = started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:  # the app's answer to a cut-off body (often a 400): replaced below
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await cap.refusal(scope, cap.max_bytes)(scope, receive, send)
