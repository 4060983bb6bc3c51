"""`.ci/run`, the CI entry point: its shape, and its behaviour with make and the services replaced by stubs."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CI_SCRIPT = ROOT / ".ci" / "run"
CI_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
CI_REDIS_URL = "redis://127.0.0.1:6379/0"
UNSET = "<unset>"


def _commands() -> list[str]:
    """The script's logical lines: comments dropped, backslash continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", CI_SCRIPT.read_text(encoding="utf-8"))
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_ci_script_is_executable() -> None:
    assert CI_SCRIPT.stat().st_mode & stat.S_IXUSR
    git = shutil.which("git")
    if git is None:
        return
    # A fresh clone takes the mode from git's index, not from this work tree.
    indexed = subprocess.run(
        [git, "ls-files", "--stage", "--", ".ci/run"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if indexed.returncode == 0 and indexed.stdout:
        assert indexed.stdout.startswith("100755"), indexed.stdout


def test_ci_script_parses_and_is_strict() -> None:
    subprocess.run(["bash", "-n", str(CI_SCRIPT)], check=True)
    commands = _commands()
    assert commands[0] == "set -euo pipefail", "strict mode must come before anything runs"


def test_ci_script_runs_lint_then_the_suite_plainly_then_on_services() -> None:
    phases = [m.group(1) for c in _commands() if (m := re.match(r'run_phase\s+"[^"]*"\s+(.*)', c))]
    assert phases[0] == "make lint", phases
    assert phases[1] == "make test", phases
    services = phases[phases.index("start_services") + 1 :]
    assert len(services) == 1, phases
    assert re.fullmatch(r'env KEFU_TEST_DATABASE_URL="\$\w+" KEFU_TEST_REDIS_URL="\$\w+" make test', services[0]), (
        services
    )


# Behaviour: make, PostgreSQL and Redis are stubs that record what the script asked of them.

STUBS = {
    "make": """
n=$(( $(cat "$FAKE_STATE/make_calls" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE_STATE/make_calls"
echo "$*|${KEFU_TEST_DATABASE_URL-<unset>}|${KEFU_TEST_REDIS_URL-<unset>}" >> "$FAKE_STATE/make.log"
if [[ "${FAKE_MAKE_FAIL_CALL:-0}" == "$n" ]]; then exit "$FAKE_MAKE_STATUS"; fi
""",
    "pg_isready": '[[ -e "$FAKE_STATE/pg_running" ]]',
    "pg_ctlcluster": """
echo "$*" >> "$FAKE_STATE/pg_ctlcluster.log"
[[ -n "${FAKE_PG_WONT_START:-}" ]] || touch "$FAKE_STATE/pg_running"
""",
    "redis-cli": """
if [[ -e "$FAKE_STATE/redis_running" ]]; then echo PONG; else echo "Could not connect" >&2; exit 1; fi
""",
    "redis-server": """
echo "$*" >> "$FAKE_STATE/redis-server.log"
[[ -n "${FAKE_REDIS_WONT_START:-}" ]] || touch "$FAKE_STATE/redis_running"
""",
    "sleep": "exit 0",
}


class FakeMachine:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.state = tmp_path / "state"
        self.bin.mkdir()
        self.state.mkdir()
        for name, body in STUBS.items():
            stub = self.bin / name
            stub.write_text(f"#!/usr/bin/env bash\n{body.strip()}\n", encoding="utf-8")
            stub.chmod(0o755)

    def services_up(self) -> None:
        (self.state / "pg_running").touch()
        (self.state / "redis_running").touch()

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("KEFU_", "FAKE_"))}
        environ |= {"PATH": f"{self.bin}{os.pathsep}{environ['PATH']}", "CI": "true", "FAKE_STATE": str(self.state)}
        environ |= env
        return subprocess.run(
            ["bash", str(CI_SCRIPT)],
            cwd=self.state,
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def log(self, name: str) -> list[str]:
        path = self.state / f"{name}.log"
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path)


def test_passes_after_lint_and_both_runs(machine: FakeMachine) -> None:
    machine.services_up()
    # A caller's stray service URLs must not turn the embedded run into a second services run.
    result = machine.run(KEFU_TEST_DATABASE_URL="postgresql+asyncpg://stray/db", KEFU_TEST_REDIS_URL="redis://stray")
    assert result.returncode == 0, result.stdout + result.stderr
    assert machine.log("make") == [
        f"lint|{UNSET}|{UNSET}",
        f"test|{UNSET}|{UNSET}",
        f"test|{CI_PG_URL}|{CI_REDIS_URL}",
    ]
    assert machine.log("pg_ctlcluster") == [] and machine.log("redis-server") == []
    assert result.stdout.index("lint") < result.stdout.index("embedded") < result.stdout.index("PostgreSQL + Redis")


def test_starts_services_that_are_down(machine: FakeMachine) -> None:
    result = machine.run()
    assert result.returncode == 0, result.stdout + result.stderr
    [pg_start] = machine.log("pg_ctlcluster")
    assert pg_start.startswith("--skip-systemctl-redirect ") and pg_start.endswith(" main start")
    [redis_start] = machine.log("redis-server")
    assert "--daemonize yes" in redis_start and "--bind 127.0.0.1" in redis_start and "--port 6379" in redis_start
    assert machine.log("make")[-1] == f"test|{CI_PG_URL}|{CI_REDIS_URL}"


@pytest.mark.parametrize("service", ["PG", "REDIS"])
def test_fails_when_a_service_never_answers(machine: FakeMachine, service: str) -> None:
    result = machine.run(**{f"FAKE_{service}_WONT_START": "1"})
    assert result.returncode != 0
    assert "did not answer" in result.stderr
    assert machine.log("make") == [f"lint|{UNSET}|{UNSET}", f"test|{UNSET}|{UNSET}"]


@pytest.mark.parametrize("failing_call", [1, 2, 3], ids=["lint", "embedded-tests", "service-tests"])
@pytest.mark.parametrize("status", [1, 2, 5], ids=["failed", "make-error", "no-tests-collected"])
def test_any_failing_phase_fails_ci_at_once(machine: FakeMachine, failing_call: int, status: int) -> None:
    machine.services_up()
    result = machine.run(FAKE_MAKE_FAIL_CALL=str(failing_call), FAKE_MAKE_STATUS=str(status))
    assert result.returncode == status
    assert len(machine.log("make")) == failing_call
    assert "FAILED" in result.stdout


def test_the_services_run_keeps_every_test_that_reaches_a_service() -> None:
    """CI's second phase runs the tests that reach the database or Redis: through a fixture's closure, or because
    their module reads tests.conftest's service URLs; the rest ran in the first phase."""
    from types import ModuleType, SimpleNamespace

    from tests.conftest import uses_the_services

    plain, embedded, on_services = ModuleType("plain"), ModuleType("embedded"), ModuleType("on_services")
    embedded.REDIS_URL = None  # type: ignore[attr-defined]  # imported, on the embedded defaults
    on_services.REDIS_URL = CI_REDIS_URL  # type: ignore[attr-defined]

    def item(*fixtures: str, module: ModuleType = plain) -> SimpleNamespace:
        return SimpleNamespace(fixturenames=list(fixtures), module=module)

    assert uses_the_services(item("crm", "db", "settings", "database_url"))  # type: ignore[arg-type]
    assert uses_the_services(item("new_db", "fresh_database_url"))  # type: ignore[arg-type]
    assert uses_the_services(item("stream", "redis_client"))  # type: ignore[arg-type]
    assert uses_the_services(item("tmp_path", module=on_services))  # type: ignore[arg-type]
    assert not uses_the_services(item("tmp_path", "encoders"))  # type: ignore[arg-type]
    assert not uses_the_services(item(module=embedded))  # type: ignore[arg-type]
