"""docker-compose.yml and .env.example: the services exist and are wired, and every variable is documented."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from bot.settings import BotSettings
from console.settings import ConsoleSettings
from crm_store.settings import StoreSettings
from knowledge_base.settings import KbSettings
from nlu.settings import NluSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

# `$$` is compose's escaped dollar; `${NAME}`, `${NAME:-default}`, `${NAME?err}` and `$NAME` are references.
_DOLLAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
_ENV_LINE = re.compile(r"^\s*(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def env_example_lines() -> Iterator[tuple[bool, str, str]]:
    """(is_commented_out, NAME, raw value) for every `NAME=value` or `# NAME=value` line of .env.example."""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ENV_LINE.match(line)
        if match:
            yield match.group(1) is not None, match.group(2), match.group(3)


def documented_variables() -> set[str]:
    return {name for _, name, _ in env_example_lines()}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def referenced_variables(compose: dict[str, Any]) -> set[str]:
    """Every variable that compose would interpolate somewhere in the file."""
    names: set[str] = set()
    for value in _strings(compose):
        for escaped, braced, bare in _DOLLAR.findall(value):
            if not escaped:
                names.add(braced or bare)
    return names


def _depends_on(service: dict[str, Any]) -> list[str]:
    depends = service.get("depends_on") or []
    return list(depends.keys()) if isinstance(depends, dict) else list(depends)


def _named_volumes(service: dict[str, Any]) -> list[str]:
    """Named volumes a service mounts (not bind mounts of host paths, not anonymous volumes)."""
    names = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                names.append(volume["source"])
        elif ":" in volume:
            source = volume.split(":", 1)[0]
            if source and not source.startswith((".", "/", "~", "$")):
                names.append(source)
    return names


def compose_problems(compose: dict[str, Any], documented: set[str]) -> list[str]:
    """What is wrong with a parsed compose file; empty when it is sound."""
    problems: list[str] = []
    services = compose.get("services") or {}
    declared_volumes = set(compose.get("volumes") or {})

    for required in ("postgres", "redis"):
        if required not in services:
            problems.append(f"service {required!r} is missing")

    for name, service in services.items():
        if not service.get("image") and not service.get("build"):
            problems.append(f"service {name!r} has neither image nor build")
        if name in ("postgres", "redis") and not (service.get("healthcheck") or {}).get("test"):
            problems.append(f"service {name!r} has no healthcheck test")
        for dependency in _depends_on(service):
            if dependency not in services:
                problems.append(f"service {name!r} depends on unknown service {dependency!r}")
        for volume in _named_volumes(service):
            if volume not in declared_volumes:
                problems.append(f"service {name!r} mounts undeclared volume {volume!r}")

    for variable in sorted(referenced_variables(compose) - documented):
        problems.append(f"${{{variable}}} is not documented in .env.example")
    return problems


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) of each host path a service mounts."""
    binds = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                binds.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
        elif ":" in volume and volume.startswith((".", "/", "~")):
            source, target, *options = volume.split(":")
            binds.append((source, target, "ro" in ",".join(options).split(",")))
    return binds


def _healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_compose_file_is_sound() -> None:
    assert compose_problems(load_compose(), documented_variables()) == []


def test_backing_services_images_and_healthchecks() -> None:
    services = load_compose()["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert "pg_isready" in _healthcheck_command(services["postgres"])
    assert "redis-cli ping" in _healthcheck_command(services["redis"])
    assert services["postgres"]["environment"] == {
        "POSTGRES_USER": "kefu",
        "POSTGRES_PASSWORD": "kefu",
        "POSTGRES_DB": "kefu",
    }
    assert _named_volumes(services["postgres"]), "PostgreSQL data must live on a named volume"


def test_documented_production_url_reaches_the_compose_database() -> None:
    postgres = load_compose()["services"]["postgres"]["environment"]
    examples = [
        make_url(value)
        for _, name, value in env_example_lines()
        if name == "KEFU_DATABASE_URL" and value.startswith("postgresql")
    ]
    assert any(url.host == "postgres" for url in examples), "no example for Kefu inside the compose network"
    for url in examples:
        assert url.drivername == "postgresql+asyncpg"
        assert (url.username, url.password, url.database) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )


def test_rasa_service_is_optional_and_serves_the_repos_nlu_data() -> None:
    """Plain `docker compose up` leaves Rasa out; with its profile it trains on this repo's config and data."""
    rasa = load_compose()["services"]["rasa"]
    assert rasa["profiles"] == ["rasa"]
    # The same Rasa as scripts/rasa-server installs, so both train the same model.
    script = (ROOT / "scripts" / "rasa-server").read_text(encoding="utf-8")
    version = re.search(r"^RASA_VERSION=(\S+)$", script, re.MULTILINE)
    assert version and rasa["image"] == f"rasa/rasa:{version.group(1)}-full"

    binds = _bind_mounts(rasa)
    missing = [source for source, _, _ in binds if not (ROOT / source).exists()]
    assert missing == [], "the rasa service mounts host paths the repository does not have"
    assert [(source, read_only) for source, _, read_only in binds] == [
        ("./nlu/rasa/config.yml", True),
        ("./nlu/data", True),
    ]
    assert (ROOT / "nlu" / "rasa" / "config.yml").is_file() and (ROOT / "nlu" / "data").is_dir()

    command = " ".join([*rasa.get("entrypoint", []), *rasa["command"]])
    mounted_at = {target for _, target, _ in binds}
    assert "rasa train nlu --config config.yml --nlu data" in command and {"/app/config.yml", "/app/data"} <= mounted_at
    assert "rasa run --enable-api" in command and "-p 5005" in command
    assert "127.0.0.1:${KEFU_COMPOSE_RASA_PORT:-5005}:5005" in rasa["ports"]
    assert "/status" in _healthcheck_command(rasa)


def test_bind_mounts_reads_both_syntaxes() -> None:
    service = {
        "volumes": [
            "./nlu/data:/app/data:ro",
            "./var:/app/var",
            "data:/data",
            "/cache",
            {"type": "bind", "source": "./nlu/rasa/config.yml", "target": "/app/config.yml", "read_only": True},
            {"type": "volume", "source": "models", "target": "/app/models"},
        ]
    }
    assert _bind_mounts(service) == [
        ("./nlu/data", "/app/data", True),
        ("./var", "/app/var", False),
        ("./nlu/rasa/config.yml", "/app/config.yml", True),
    ]


# Every settings class of Kefu, with its environment prefix.
SETTINGS_CLASSES = [StoreSettings, KbSettings, NluSettings, BotSettings, ConsoleSettings]


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
def test_every_setting_is_documented(settings_class: type[BaseSettings]) -> None:
    documented = documented_variables()
    prefix = settings_class.model_config["env_prefix"]
    missing = [f"{prefix}{field}".upper() for field in settings_class.model_fields]
    assert [name for name in missing if name not in documented] == []


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
def test_uncommented_env_example_values_are_the_defaults(
    settings_class: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copying .env.example as is changes nothing: each active line parses and equals the default."""
    for name in [n for n in os.environ if n.startswith("KEFU_")]:
        monkeypatch.delenv(name)
    defaults = settings_class()
    for commented, name, value in env_example_lines():
        if not commented:
            monkeypatch.setenv(name, shlex.split(value)[0] if value else "")
    assert settings_class() == defaults


# The checks above must be able to fail: each broken file below is caught, for the right reason.

SOUND: dict[str, Any] = {
    "services": {
        "postgres": {"image": "postgres:16", "healthcheck": {"test": ["CMD", "pg_isready"]}},
        "redis": {"image": "redis:7", "healthcheck": {"test": ["CMD", "redis-cli", "ping"]}},
    }
}


def _broken(**services: dict[str, Any]) -> dict[str, Any]:
    return {"services": {**SOUND["services"], **services}}


@pytest.mark.parametrize(
    ("compose", "documented", "expected"),
    [
        ({"services": {"redis": SOUND["services"]["redis"]}}, set(), "service 'postgres' is missing"),
        (_broken(redis={"healthcheck": {"test": ["CMD", "redis-cli", "ping"]}}), set(), "neither image"),
        (_broken(postgres={"image": "postgres:16"}), set(), "'postgres' has no healthcheck"),
        (_broken(worker={"image": "kefu", "depends_on": ["postgress"]}), set(), "unknown service 'postgress'"),
        (
            _broken(worker={"image": "kefu", "depends_on": {"rabbit": {"condition": "service_healthy"}}}),
            set(),
            "unknown service 'rabbit'",
        ),
        (_broken(worker={"image": "kefu", "volumes": ["kefu-var:/app/var"]}), set(), "volume 'kefu-var'"),
        (
            _broken(worker={"image": "kefu", "volumes": [{"type": "volume", "source": "media", "target": "/m"}]}),
            set(),
            "volume 'media'",
        ),
        (
            _broken(worker={"image": "kefu", "environment": {"KEFU_DATABASE_URL": "${DATABASE_URL:-x}"}}),
            {"KEFU_DATABASE_URL"},
            "${DATABASE_URL} is not documented",
        ),
        (_broken(worker={"image": "kefu", "command": "run $TOKEN"}), set(), "${TOKEN} is not documented"),
    ],
)
def test_compose_problems_catches_a_broken_file(compose: dict[str, Any], documented: set[str], expected: str) -> None:
    problems = compose_problems(compose, documented)
    assert any(expected in problem for problem in problems), problems


def test_compose_problems_accepts_what_compose_allows() -> None:
    compose = _broken(
        worker={
            "image": "kefu",
            "depends_on": {"postgres": {"condition": "service_healthy"}},
            "volumes": ["./var:/app/var", "/etc/localtime:/etc/localtime:ro", "/cache", "data:/data"],
            "command": "sh -c 'echo $$HOME ${PORT:-8000}'",
        }
    )
    compose["volumes"] = {"data": None}
    assert compose_problems(compose, {"PORT"}) == []
    assert referenced_variables(compose) == {"PORT"}
