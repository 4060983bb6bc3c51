"""docker-compose.yml and .env.example: the services exist and are wired, and every variable is documented."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from bot.settings import BotSettings
from console.settings import ConsoleSettings
from crm_store.settings import StoreSettings
from kefu.ops import OpsSettings
from knowledge_base.settings import KbSettings
from nlu.settings import NluSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

# Every settings class of Kefu, with its environment prefix.
SETTINGS_CLASSES: list[type[BaseSettings]] = [
    StoreSettings,
    KbSettings,
    NluSettings,
    BotSettings,
    ConsoleSettings,
    OpsSettings,
]
# Variables that only docker-compose.yml reads (host ports); Kefu itself never sees them as settings.
COMPOSE_ONLY_PREFIX = "KEFU_COMPOSE_"
# Kefu's processes: each one `kefu <command>` of the repository's image, listening on its --port.
KEFU_SERVERS = ("console", "bot", "worker")
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

# `$$` is compose's escaped dollar; `${NAME}`, `${NAME:-default}`, `${NAME?err}` and `$NAME` are references.
_DOLLAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
_ENV_LINE = re.compile(r"^\s*(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# `${NAME}`, `${NAME:-default}` / `${NAME-default}`, `$NAME`: what compose substitutes (no nesting in this file).
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


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


def _depends_on_conditions(service: dict[str, Any]) -> dict[str, str]:
    """Each dependency with its condition (the list form, and a mapping without one, mean service_started)."""
    depends = service.get("depends_on") or []
    if not isinstance(depends, dict):
        return dict.fromkeys(depends, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()}


def interpolate(value: str, environment: dict[str, str] | None = None) -> str:
    """`value` as compose substitutes it from `environment` (default: nothing set, so every default applies)."""
    environment = environment or {}

    def substitute(match: re.Match[str]) -> str:
        name, operator, default = match.group(1) or match.group(4), match.group(2), match.group(3) or ""
        if operator == ":-":  # the default when unset or empty
            return environment.get(name) or default
        if operator == "-":  # the default when unset
            return environment.get(name, default)
        return environment.get(name, "")

    return _REFERENCE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of compose's forms (a mapping, or a list of NAME=value)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def settings_variables() -> set[str]:
    """Every environment variable some Kefu settings class reads."""
    return {
        f"{settings_class.model_config['env_prefix']}{field}".upper()
        for settings_class in SETTINGS_CLASSES
        for field in settings_class.model_fields
    }


def environment_problems(compose: dict[str, Any], known: set[str]) -> list[str]:
    """KEFU_* variables of the services that no settings class reads, or that compose would leave empty."""
    problems = []
    for name, service in (compose.get("services") or {}).items():
        for variable, value in _environment(service).items():
            if not variable.startswith("KEFU_"):
                continue
            if variable not in known and not variable.startswith(COMPOSE_ONLY_PREFIX):
                problems.append(f"service {name!r} sets {variable}, which no Kefu setting reads")
            # pydantic-settings reads an empty variable as the value "" (not as unset): a token of "", a port "".
            if interpolate(value) == "":
                problems.append(f"service {name!r} sets {variable} to an empty value when its ${{...}} is unset")
    return problems


def cli_problem(args: list[str]) -> str | None:
    """Why `kefu ARGS` would not parse with the real CLI (unknown command, option or value); None when it does."""
    from kefu.cli import app

    # typer ships its own copy of click: its classes, not click's, and groups known by their get_command.
    command: Any = typer.main.get_command(app)
    context = command.context_class(command, info_name="kefu")
    rest = list(args)
    while hasattr(command, "get_command"):
        if not rest or rest[0].startswith("-"):
            return f"`kefu {' '.join(args)}` names no subcommand of `{context.command_path}`"
        name, *rest = rest
        subcommand = command.get_command(context, name)
        if subcommand is None:
            return f"`{context.command_path}` has no command {name!r}"
        command, context = subcommand, subcommand.context_class(subcommand, info_name=name, parent=context)
    try:
        command.make_context(context.info_name, rest, parent=context.parent, resilient_parsing=False)
    except typer.Exit:
        return f"`kefu {' '.join(args)}` only prints and exits"
    except typer.TyperException as error:
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        return f"`kefu {' '.join(args)}`: {message}"
    return None


def kefu_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the repository's image (built from its Dockerfile)."""
    return {name: service for name, service in compose["services"].items() if service.get("build")}


def _option(args: list[str], option: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == option and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{option}="):
            return arg.split("=", 1)[1]
    return None


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port, as compose reads it with no .env."""
    published = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published.append(
                (
                    str(port.get("host_ip", "")),
                    interpolate(str(port.get("published", ""))),
                    str(port["target"]),
                )
            )
            continue
        parts = interpolate(str(port)).split(":")
        address = parts[0] if len(parts) == 3 else ""
        host = parts[-2] if len(parts) >= 2 else ""
        published.append((address, host, parts[-1].split("/")[0]))
    return published


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
        for dependency, condition in _depends_on_conditions(service).items():
            if dependency not in services:
                problems.append(f"service {name!r} depends on unknown service {dependency!r}")
            elif condition not in DEPENDS_ON_CONDITIONS:
                problems.append(f"service {name!r} waits for {dependency!r} with unknown condition {condition!r}")
            elif condition == "service_healthy" and not (services[dependency].get("healthcheck") or {}).get("test"):
                problems.append(f"service {name!r} waits for {dependency!r} to be healthy, which has no healthcheck")
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
    assert {name: interpolate(value) for name, value in _environment(services["postgres"]).items()} == {
        "POSTGRES_USER": "kefu",
        "POSTGRES_PASSWORD": "kefu",
        "POSTGRES_DB": "kefu",
    }
    assert _named_volumes(services["postgres"]), "PostgreSQL data must live on a named volume"


def test_database_password_comes_from_the_environment() -> None:
    """`kefu` is only the local default: .env's KEFU_COMPOSE_POSTGRES_PASSWORD sets PostgreSQL's password and the
    URL of every Kefu container alike; no password is written into the file itself."""
    services = load_compose()["services"]
    chosen = {"KEFU_COMPOSE_POSTGRES_PASSWORD": "n0t-the-default"}
    assert interpolate(_environment(services["postgres"])["POSTGRES_PASSWORD"], chosen) == "n0t-the-default"
    for name in ("migrate", *KEFU_SERVERS):
        url = make_url(interpolate(_environment(services[name])["KEFU_DATABASE_URL"], chosen))
        assert url.password == "n0t-the-default", name
    for name, service in services.items():
        for variable, value in _environment(service).items():
            if "PASSWORD" in variable or (variable.endswith("_URL") and "@" in value):
                assert "${" in value, f"{name}: {variable} holds a literal password"


def test_documented_production_url_reaches_the_compose_database() -> None:
    postgres_service = load_compose()["services"]["postgres"]
    postgres = {name: interpolate(value) for name, value in _environment(postgres_service).items()}
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


def _named_volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume, for each named volume a service mounts."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                mounts[volume["target"]] = volume["source"]
        elif ":" in volume and volume.split(":", 1)[0] in _named_volumes({"volumes": [volume]}):
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def _seconds(duration: str | int) -> float:
    """A compose duration ("30s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", str(duration))
    assert parts and "".join(a + b for a, b in parts) == str(duration), f"not a duration: {duration!r}"
    return sum(float(amount) * units[unit] for amount, unit in parts)


def test_services_of_a_production_deployment() -> None:
    compose = load_compose()
    services = compose["services"]
    assert {"postgres", "redis", "migrate", *KEFU_SERVERS, "rasa"} <= set(services)
    # A plain `docker compose up` starts everything but the optional Rasa server.
    assert {name: service["profiles"] for name, service in services.items() if "profiles" in service} == {
        "rasa": ["rasa"]
    }
    assert set(kefu_services(compose)) == {"migrate", *KEFU_SERVERS}


def test_kefu_services_share_one_image_built_from_the_dockerfile() -> None:
    services = kefu_services(load_compose())
    builds = {s["build"] if isinstance(s["build"], str) else s["build"].get("context") for s in services.values()}
    assert builds == {"."} and DOCKERFILE.is_file()
    images = {service.get("image") for service in services.values()}
    assert len(images) == 1 and None not in images, "one image, built once and shared by every Kefu process"
    # The image's ENTRYPOINT is `kefu`: each command is a `kefu` subcommand.
    assert all("entrypoint" not in service for service in services.values())
    # `.env` is optional: without one, `docker compose up` must still start.
    for name, service in services.items():
        for env_file in service.get("env_file") or []:
            assert isinstance(env_file, dict) and env_file.get("required") is False, name


def test_migrate_upgrades_the_schema_once_before_the_processes_start() -> None:
    migrate = load_compose()["services"]["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert _depends_on_conditions(migrate) == {"postgres": "service_healthy"}
    assert make_url(_environment(migrate)["KEFU_DATABASE_URL"]).host == "postgres"


@pytest.mark.parametrize("name", KEFU_SERVERS)
def test_kefu_process_is_wired_for_production(name: str) -> None:
    service = load_compose()["services"][name]
    assert service["command"][0] == name
    assert _depends_on_conditions(service) == {
        "migrate": "service_completed_successfully",
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    assert service["restart"] == "unless-stopped"
    # Docker's default is 10 s; graceful shutdown finishes in-flight requests and deliveries first.
    assert _seconds(service.get("stop_grace_period", "10s")) >= 20
    environment = _environment(service)
    assert {
        key: interpolate(environment.get(key, ""))
        for key in ("KEFU_DATABASE_URL", "KEFU_REDIS_URL", "KEFU_LOG_FORMAT", "HF_HUB_OFFLINE")
    } == {
        "KEFU_DATABASE_URL": "postgresql+asyncpg://kefu:kefu@postgres:5432/kefu",
        "KEFU_REDIS_URL": "redis://redis:6379/0",
        "KEFU_LOG_FORMAT": "json",
        "HF_HUB_OFFLINE": "1",
    }
    assert (service.get("healthcheck") or {}).get("test"), f"{name} has no healthcheck"


@pytest.mark.parametrize("name", ["migrate", *KEFU_SERVERS])
def test_kefu_command_exists_in_the_cli(name: str) -> None:
    """`kefu <command> <options>` of each service parses with the real CLI: the command and every option exist."""
    assert cli_problem(load_compose()["services"][name]["command"]) is None


@pytest.mark.parametrize("name", KEFU_SERVERS)
def test_kefu_process_listens_where_its_healthcheck_and_ports_look(name: str) -> None:
    service = load_compose()["services"][name]
    command = service["command"]
    port = _option(command, "--port")
    assert port is not None and port.isdigit(), f"{name} names no --port"
    # 127.0.0.1 inside a container is unreachable for published ports and for the proxy.
    assert _option(command, "--host") == "0.0.0.0"
    probe = r"https?://(?:127\.0\.0\.1|localhost):(\d+)/(?:readyz|healthz)\b"
    probes = re.findall(probe, _healthcheck_command(service))
    assert probes and set(probes) == {port}, f"{name}'s healthcheck must ask its own port {port} for /readyz"
    assert [container for _, _, container in published_ports(service)] in ([], [port])


def test_ports_are_published_on_loopback_only_and_replicas_never_clash() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        for address, _, _ in published_ports(service):
            assert address == "127.0.0.1", f"{name} publishes a port beyond this machine"
    for name in KEFU_SERVERS:
        # `docker compose up --scale console=2`: a fixed host port would be taken twice. Docker picks one per
        # replica unless .env pins it (KEFU_COMPOSE_<NAME>_PORT, for a single replica).
        assert [host for _, host, _ in published_ports(services[name])] in ([], [""]), name
        pin = {f"KEFU_COMPOSE_{name.upper()}_PORT": "18080"}
        pinned = [interpolate(str(port), pin) for port in services[name].get("ports") or []]
        assert all(port.startswith("127.0.0.1:18080:") for port in pinned), pinned


def test_bot_and_console_share_the_nlu_model() -> None:
    compose = load_compose()
    volumes = []
    for name in ("bot", "console"):
        service = compose["services"][name]
        model_dir = _environment(service).get("KEFU_NLU_MODEL_DIR")
        assert model_dir, f"{name} does not set KEFU_NLU_MODEL_DIR"
        volume = _named_volume_mounts(service).get(model_dir)
        assert volume, f"{name}'s KEFU_NLU_MODEL_DIR {model_dir} is not on a named volume"
        volumes.append((model_dir, volume))
    assert volumes[0] == volumes[1] and volumes[0][1] in (compose.get("volumes") or {})


def test_service_environments_name_only_real_settings() -> None:
    assert environment_problems(load_compose(), settings_variables()) == []


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"KEFU_DATABSE_URL": "postgresql+asyncpg://kefu:kefu@postgres/kefu"}, "KEFU_DATABSE_URL, which no"),
        (["KEFU_BOT_TELEGRAM_TOKN=x"], "KEFU_BOT_TELEGRAM_TOKN, which no"),
        ({"KEFU_BOT_TELEGRAM_TOKEN": "${KEFU_BOT_TELEGRAM_TOKEN:-}"}, "KEFU_BOT_TELEGRAM_TOKEN to an empty value"),
        ({"KEFU_BOT_WEBHOOK_URL": "${KEFU_BOT_WEBHOOK_URL}"}, "KEFU_BOT_WEBHOOK_URL to an empty value"),
        (["KEFU_NLU_BACKEND="], "KEFU_NLU_BACKEND to an empty value"),
    ],
)
def test_environment_problems_catches_a_wrong_variable(environment: dict[str, str] | list[str], expected: str) -> None:
    problems = environment_problems({"services": {"bot": {"environment": environment}}}, settings_variables())
    assert any(expected in problem for problem in problems), problems


def test_environment_problems_accepts_settings_defaults_and_other_variables() -> None:
    environment = {
        "KEFU_LOG_FORMAT": "${KEFU_LOG_FORMAT:-json}",
        "KEFU_BOT_SEND_PER_SECOND": 20,
        "KEFU_COMPOSE_ANYTHING": "x",
        "HF_HUB_OFFLINE": "",
    }
    assert environment_problems({"services": {"bot": {"environment": environment}}}, settings_variables()) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["consol"], "has no command 'consol'"),
        (["db"], "names no subcommand"),
        (["db", "upgrad"], "has no command 'upgrad'"),
        (["db", "upgrade", "--revison", "head"], "--revison"),
        (["db", "upgrade", "--help"], "only prints"),
        (["demo", "--port", "http"], "Invalid value for '--port'"),
        (["demo", "--host", "0.0.0.0", "--port", "8080", "--listen"], "--listen"),
        (["agent", "create", "--email", "a@example.com"], "--role"),
        (["agent", "create", "--email", "a@example.com", "--role", "wizard"], "wizard"),
    ],
)
def test_cli_problem_catches_a_command_the_cli_lacks(args: list[str], expected: str) -> None:
    problem = cli_problem(args)
    assert problem is not None and expected in problem, problem


def test_cli_problem_accepts_real_commands() -> None:
    assert cli_problem(["db", "upgrade"]) is None
    assert cli_problem(["db", "upgrade", "--revision", "head"]) is None
    assert cli_problem(["demo", "--host", "0.0.0.0", "--port", "8080", "--no-serve"]) is None


def test_published_ports_reads_both_syntaxes() -> None:
    service = {
        "ports": [
            "127.0.0.1:${KEFU_COMPOSE_CONSOLE_PORT:-}:8080",
            "127.0.0.1:${KEFU_COMPOSE_REDIS_PORT:-6379}:6379",
            "8081",
            "9000:9001/udp",
            {"target": 8082, "host_ip": "127.0.0.1"},
            {"target": 8083, "published": "${P:-8084}"},
        ]
    }
    assert published_ports(service) == [
        ("127.0.0.1", "", "8080"),
        ("127.0.0.1", "6379", "6379"),
        ("", "", "8081"),
        ("", "9000", "9001"),
        ("127.0.0.1", "", "8082"),
        ("", "8084", "8083"),
    ]
    assert interpolate("${A:-x}|${A-y}|${B}|${B-z}|$$C", {"A": ""}) == "x|||z|$C"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments left out."""
    lines = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_dockerfile_builds_a_slim_non_root_kefu_image() -> None:
    instructions = _dockerfile_instructions()
    assert all(arguments.split()[0] == "python:3.11-slim" for keyword, arguments in instructions if keyword == "FROM")
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    final = instructions[last_from:]
    values = {keyword: arguments for keyword, arguments in final}
    assert yaml.safe_load(values["ENTRYPOINT"]) == ["kefu"]
    assert values["WORKDIR"] == "/app"
    assert values.get("USER", "root").split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert any(re.search(r"\bHF_HUB_OFFLINE=1\b", arguments) for keyword, arguments in final if keyword == "ENV")

    # torch first, the Makefile's pinned version from the CPU index; then Kefu without its dev extras.
    arg_defaults = dict(
        arguments.split("=", 1) for keyword, arguments in instructions if keyword == "ARG" and "=" in arguments
    )
    runs = [interpolate(arguments, arg_defaults) for keyword, arguments in final if keyword == "RUN"]
    torch_runs = [i for i, run in enumerate(runs) if re.search(r"pip install .*\btorch==", run)]
    makefile_torch = re.search(r"torch==(\S+)", (ROOT / "Makefile").read_text(encoding="utf-8"))
    assert torch_runs and makefile_torch
    torch_run = runs[torch_runs[0]]
    assert f"torch=={makefile_torch.group(1)}" in torch_run.replace('"', "")
    assert "download.pytorch.org/whl/cpu" in torch_run
    kefu_runs = [i for i, run in enumerate(runs) if re.search(r"pip install .*(\s\.(\s|$)|\.whl|kefu)", run)]
    assert kefu_runs and min(kefu_runs) > torch_runs[0], "Kefu must be installed after torch, which it then keeps"
    assert not any("[dev]" in run for run in runs)


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "var", ".env"} <= ignored


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
        (
            _broken(worker={"image": "kefu", "depends_on": {"postgres": {"condition": "service_ready"}}}),
            set(),
            "unknown condition 'service_ready'",
        ),
        (
            _broken(
                migrate={"image": "kefu"},
                worker={"image": "kefu", "depends_on": {"migrate": {"condition": "service_healthy"}}},
            ),
            set(),
            "'migrate' to be healthy, which has no healthcheck",
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
            "depends_on": {
                "postgres": {"condition": "service_healthy"},
                "redis": {"condition": "service_started"},
                "migrate": {"condition": "service_completed_successfully"},
            },
            "volumes": ["./var:/app/var", "/etc/localtime:/etc/localtime:ro", "/cache", "data:/data"],
            "command": "sh -c 'echo $$HOME ${PORT:-8000}'",
        }
    )
    compose["services"]["migrate"] = {"image": "kefu", "depends_on": ["postgres"]}
    compose["volumes"] = {"data": None}
    assert compose_problems(compose, {"PORT"}) == []
    assert referenced_variables(compose) == {"PORT"}
