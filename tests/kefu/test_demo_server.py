"""`kefu demo --port PORT` as a newcomer runs it: one process serving the web chat and the console on one port,
and the Telegram bot (long polling against the fake Bot API server) when a token is set. On the embedded defaults,
or on Redis (event bus + aiogram's RedisStorage) when KEFU_TEST_REDIS_URL is set."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import httpx

from tests.fake_telegram import DEFAULT_TOKEN, FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_until(stream: asyncio.StreamReader, marker: str, seen: list[str], timeout: float) -> None:  # noqa: ASYNC109
    async def read() -> None:
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError("kefu demo exited early:\n" + "".join(seen))
            seen.append(line)
            if marker in line:
                return

    await asyncio.wait_for(read(), timeout)


async def test_demo_serves_the_web_chat_the_console_and_telegram_on_one_port(
    tmp_path: Path, nlu_model_dir: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with FakeTelegram() as tg:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
        env.update({
            "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
            "KEFU_NLU_MODEL_DIR": str(nlu_model_dir),  # trained once by the session (same data: not retrained)
            "KEFU_BOT_TELEGRAM_TOKEN": DEFAULT_TOKEN, "KEFU_BOT_TELEGRAM_API_BASE": tg.base_url,
        })
        if settings.redis_url:
            env["KEFU_REDIS_URL"] = settings.redis_url
            env["KEFU_EVENT_STREAM"] = f"kefu-test:demo:{uuid.uuid4().hex}"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kefu.cli", "demo", "--port", str(port), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        output: list[str] = []
        try:
            assert process.stdout is not None
            await read_until(process.stdout, "Press Ctrl+C", output, timeout=240)
            text = "".join(output)
            assert f"http://127.0.0.1:{port}/webchat" in text and "Telegram  long polling started" in text
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for _ in range(100):  # uvicorn binds just after the banner
                    try:
                        front = await client.get("/", follow_redirects=True)  # the console's sign-in page
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.1)
                assert front.status_code == 200 and front.url.path == "/login" and "/webchat" in front.text
                assert (await client.get("/webchat")).status_code == 200
                answer = await client.post("/webchat/api/messages",
                                           json={"visitor_id": "v-demo", "text": "how long does shipping take?"})
                assert answer.status_code == 200, answer.text
                (reply,) = answer.json()["replies"]
                assert reply["decision"] == "answer" and reply["article_external_id"] == "shop-en-shipping"
                chinese = await client.post("/webchat/api/messages", json={"visitor_id": "v-demo-zh",
                                                                           "text": "我的积分怎么兑换礼品？"})
                assert chinese.json()["language"] == "zh" and chinese.json()["replies"]

            # A page left open (a live stream) must not hold Ctrl+C up.
            streaming = asyncio.Event()

            async def keep_a_page_open() -> None:
                async with httpx.AsyncClient(base_url=base, timeout=None) as client, client.stream(
                    "GET", "/webchat/api/events", params={"visitor_id": "v-open"}
                ) as response:
                    async for _ in response.aiter_lines():
                        streaming.set()

            open_page = asyncio.create_task(keep_a_page_open())
            await asyncio.wait_for(streaming.wait(), timeout=10)

            tg.user_message(4242, "/start", language_code="zh-hans")
            (welcome,) = await tg.wait_for_messages(4242, 1, timeout=30)
            assert welcome["text"].startswith("您好")
            assert tg.commands_for("zh") and tg.commands_for("")  # the menus in both languages
            tg.user_message(4242, "how long does shipping take?")
            shipping = (await tg.wait_for_messages(4242, 2, timeout=30))[1]
            assert "Source: " in shipping["text"] or "来源：" in shipping["text"]
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGINT)  # Ctrl+C
                try:
                    await asyncio.wait_for(process.wait(), timeout=30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    raise AssertionError("kefu demo did not stop on Ctrl+C:\n" + "".join(output)) from None
        open_page.cancel()
        await asyncio.gather(open_page, return_exceptions=True)
        rest = (await process.stdout.read()).decode() if process.stdout else ""
        assert process.returncode in (0, 130), "".join(output) + rest
        assert "Traceback" not in "".join(output) + rest
