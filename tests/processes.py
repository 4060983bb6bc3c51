"""Real Kefu processes for the production tests and the load benchmark: `kefu bot`, `kefu console` and
`kefu worker` started as subprocesses against PostgreSQL and Redis and the fake Telegram server, a private
redis-server that can be restarted, and a TCP proxy that can cut PostgreSQL off."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class KefuProcess:
    role: str
    port: int
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    async def wait_ready(self, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=3) as client:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise AssertionError(f"kefu {self.role} exited ({self.process.returncode}):\n{self.log()[-4000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"kefu {self.role} not ready in {timeout_s}s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """kill -9."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    async def stop(self, timeout_s: float = 40) -> int | None:
        """SIGTERM (graceful), then SIGKILL if it does not end in time."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                self.kill()
                await self.process.wait()
        return self.process.returncode


@dataclass
class Cluster:
    """Kefu processes sharing one environment (database, Redis, stream, fake Telegram)."""

    env: dict[str, str]
    workdir: Path
    processes: list[KefuProcess] = field(default_factory=list)

    async def start(self, role: str, *, extra_env: dict[str, str] | None = None, wait: bool = True) -> KefuProcess:
        port = free_port()
        log_path = self.workdir / f"{role}-{port}.log"
        env = dict(self.env)
        env.update(extra_env or {})
        handle = log_path.open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kefu.cli", role, "--port", str(port), cwd=self.workdir, env=env,
            stdout=handle, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        handle.close()
        started = KefuProcess(role, port, process, log_path)
        self.processes.append(started)
        if wait:
            await started.wait_ready()
        return started

    async def stop_all(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)


def kefu_env(*, database_url: str, redis_url: str, stream: str, telegram_api_base: str, token: str,
             nlu_model_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a Kefu process: the caller's, without any KEFU_ setting, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env.update({
        "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "KEFU_DATABASE_URL": database_url,
        "KEFU_REDIS_URL": redis_url, "KEFU_EVENT_STREAM": stream, "KEFU_BOT_TELEGRAM_TOKEN": token,
        "KEFU_BOT_TELEGRAM_API_BASE": telegram_api_base, "KEFU_NLU_MODEL_DIR": str(nlu_model_dir),
        "KEFU_LOG_FORMAT": "json", "KEFU_LOG_LEVEL": "INFO",
    })
    env.update({f"KEFU_{k.upper()}": v for k, v in settings.items()})
    return env


@contextlib.asynccontextmanager
async def cluster(env: dict[str, str], workdir: Path) -> AsyncIterator[Cluster]:
    running = Cluster(env, workdir)
    try:
        yield running
    finally:
        await running.stop_all()


# --------------------------------------------------------------------------------------------------------------
# A Redis of the test's own, to restart
# --------------------------------------------------------------------------------------------------------------


class PrivateRedis:
    """redis-server on a free port with its append-only file in `directory` (so a restart keeps the streams, as
    docker-compose's Redis does)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = await asyncio.create_subprocess_exec(
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the private redis-server did not start")

    async def stop(self) -> None:
        """A clean shutdown (SIGTERM: Redis writes its data and exits)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 10)


# --------------------------------------------------------------------------------------------------------------
# A TCP proxy to cut a server off (PostgreSQL "down" for the processes behind it)
# --------------------------------------------------------------------------------------------------------------


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a server; `cut()` closes every connection and refuses new ones (the server
    looks down to whoever connects through the proxy), `restore()` accepts again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, upstream_writer})
        pipes = [asyncio.ensure_future(self._pipe(reader, upstream_writer)),
                 asyncio.ensure_future(self._pipe(upstream_reader, writer))]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
                self._pipes.discard(pipe)
            for end in (writer, upstream_writer):
                self._writers.discard(end)
                end.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
