"""The console's cap on request bodies: a little above the knowledge-base import's 5 MB of uploads (room for the
multipart framing of up to 200 files and the form's fields); every other console form and API body is far smaller.
Past it: 413, as JSON for the API and HTMX (`{"detail": ...}`), as the error page for a browser's form."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Scope

from console.routes.kb import MAX_UPLOAD_BYTES
from console.security import wants_json
from console.web import render, with_security_headers
from crm_store.body_limit import limit_request_bodies

MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 1024 * 1024
MB = 1024 * 1024


def too_large(scope: Scope, max_bytes: int) -> Response:
    """The 413 of a request whose body is over the cap."""
    request = Request(scope)
    message = (f"This request is too large (at most {max_bytes / MB:.0f} MB). A knowledge-base import takes "
               f"{MAX_UPLOAD_BYTES // MB} MB of files at once: split it into smaller files.")
    if wants_json(request):
        return with_security_headers(JSONResponse({"detail": message}, status_code=413))
    return render(request, "error.html", status_code=413, title="Too large", message=message)


def limit_console_bodies(app: FastAPI, *, max_bytes: int = MAX_BODY_BYTES) -> None:
    """Cap every request body the app takes at `max_bytes` (the web chat sets its own, smaller cap)."""
    limit_request_bodies(app, prefix="/", max_bytes=max_bytes, refusal=too_large)
