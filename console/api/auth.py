"""The REST API's caller and its errors: a bearer token an admin issued (never the console's session cookie, so no
CSRF either: the token is not sent by a browser on its own), each route's scope, and domain errors as JSON."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError

from console.api.schemas import MAX_ID, Error
from console.context import ConsoleDep
from console.permissions import ApiScope
from crm_store.dto import ApiTokenView
from crm_store.errors import DomainError, NotFound

MAX_TOKEN = 200  # characters; issued tokens are ~48
bearer = HTTPBearer(auto_error=False, scheme_name="bearerToken",
                    description="An API token an admin issued in the console (Admin → API tokens).")


def _unauthorized(message: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="kefu"' + (f', error="{error}"' if error else "")
    return HTTPException(401, message, headers={"WWW-Authenticate": challenge})


async def api_token(
    console: ConsoleDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ApiTokenView:
    """The caller's live token, from `Authorization: Bearer <token>`; 401 for none, unknown, revoked or expired."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("Send an API token: Authorization: Bearer <token>.")
    token = credentials.credentials
    view = await console.crm.agents.api_token(token=token) if len(token) <= MAX_TOKEN else None
    if view is None:
        raise _unauthorized("This API token is not valid (unknown, revoked or expired).", "invalid_token")
    return view


@functools.cache
def require_scope(scope: ApiScope) -> Any:
    """The dependency of an API route: a token with `scope` (else 403). `route_permission` finds the scope, so the
    console's start-up check and the permission tests see that the route is guarded."""

    # Security(...) puts the scope in the operation's OpenAPI security requirement (OpenAPI 3.1 allows it).
    async def guard(token: ApiTokenView = Security(api_token, scopes=[scope])) -> ApiTokenView:
        if scope not in token.scopes:
            raise HTTPException(403, f"This API token lacks the scope {scope}.", headers={
                "WWW-Authenticate": f'Bearer realm="kefu", error="insufficient_scope", scope="{scope}"',
            })
        return token

    guard.permission = scope  # type: ignore[attr-defined]
    guard.__name__ = f"require_scope_{scope.name.lower()}"
    return Depends(guard)


def acting_agent(token: ApiTokenView) -> int | None:
    """Whom the API's changes are recorded as: the agent who issued the token (None once that agent is deleted)."""
    return token.created_by_agent_id


def entity_id(description: str) -> Any:
    return Path(ge=1, le=MAX_ID, description=description)


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: a 422 that echoes a lone surrogate back still encodes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def invalid(detail: str) -> JSONResponse:
    """A 422 shaped as FastAPI's own validation errors, so every 422 of the API has one schema."""
    return JSONResponse({"detail": [{"loc": ["body"], "msg": detail, "type": "value_error"}]}, status_code=422)


class ApiRoute(APIRoute):
    """An API route whose domain errors become JSON: NotFound 404, other refusals (and a duplicate key) 409, a
    value the domain rejects (or the database cannot hold) 422."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:  # FastAPI's own handler fails on text that has no UTF-8
                return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
            except NotFound as exc:
                return error(404, str(exc))
            except DomainError as exc:
                return error(409, str(exc))
            except IntegrityError:
                return error(409, "This conflicts with an existing record (a duplicate id or reference).")
            except DataError:
                return invalid("A value is out of the range the store can hold.")
            except ValidationError:
                raise  # our own response building failed: a bug, not the caller's mistake
            except ValueError as exc:
                return invalid(str(exc))

        return answer


STANDARD_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "The body cannot be read (not UTF-8 text)."},
    401: {"model": Error, "description": "No token, or one that is unknown, revoked or expired."},
    403: {"model": Error, "description": "The token lacks the route's scope."},
    413: {"model": Error, "description": "The request body is larger than the console takes (console/body_limit.py)."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Error, "description": "No such record."}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Error, "description": "The change is refused."}}


def area_router(prefix: str) -> APIRouter:
    """The router of one area of the API (tickets, customers, articles): its errors as JSON and documented."""
    return APIRouter(prefix=prefix, tags=[prefix.strip("/")], route_class=ApiRoute, responses=STANDARD_ERRORS)
