"""The console's services and configuration (`Console`), kept on the app's state and reached by every route through
`ConsoleDep`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request

from console.settings import ConsoleSettings
from console.throttle import LoginThrottle
from crm_store.crm import CRM

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def _static_versions() -> dict[str, str]:
    """A content hash per static file, for cache-busting URLs (`/static/console.css?v=...`)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10] for p in STATIC.iterdir() if p.is_file()}


def build_templates() -> jinja2.Environment:
    """Jinja2 with autoescaping on for every template, whatever its file name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    versions = _static_versions()
    env.globals["static"] = lambda name: f"/static/{name}?v={versions.get(name, '0')}"
    env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M") if value else "—"
    return env


@dataclass
class Console:
    """The console's services and configuration, built once by `install_console`."""

    crm: CRM
    settings: ConsoleSettings
    throttle: LoginThrottle
    kb: Any = None  # knowledge_base.service.KnowledgeBase, when the process has one
    shop_name: str = "Kefu"
    footer_links: tuple[tuple[str, str], ...] = ()  # (label, href) shown under the sign-in form
    templates: jinja2.Environment = field(default_factory=build_templates)

    async def close(self) -> None:
        await self.throttle.close()


def get_console(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


ConsoleDep = Annotated[Console, Depends(get_console)]
