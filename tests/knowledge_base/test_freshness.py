"""Publishing, editing and unpublishing reach search at once in the same process and within seconds in another.

The other process is real (a subprocess on the same database). With KEFU_TEST_REDIS_URL it hears kb.changed on
Redis Streams; without, it notices the new revision stamp by polling.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crm_store.settings import StoreSettings
from kefu.runtime import crm_session, open_knowledge_base
from knowledge_base.encoder import HashingEncoder
from knowledge_base.service import Encoders
from knowledge_base.settings import KbSettings
from tests.conftest import REDIS_URL, run_blocking

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = KbSettings(answer_at=0.5, suggest_at=0.2, refresh_interval_s=1.0)


@pytest.fixture
def kb_database(fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    from crm_store.migrations import upgrade

    url = fresh_database_url()
    run_blocking(upgrade(url))
    return url


class Probe:
    """The second process: ask it a question, read its JSON answer."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "KEFU_DATABASE_URL": url, "PROBE_REFRESH_S": "1.0"}
        env.pop("KEFU_REDIS_URL", None)
        if REDIS_URL:
            env["KEFU_REDIS_URL"] = REDIS_URL
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("kb_probe.py"))], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def read(self) -> dict:  # type: ignore[type-arg]
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise AssertionError(f"probe died: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        return json.loads(line)

    def ask(self, question: str) -> dict:  # type: ignore[type-arg]
        self.proc.stdin.write(question + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self.read()

    def until(self, question: str, predicate, timeout: float = 10.0) -> float:  # type: ignore[no-untyped-def]
        """Seconds until the probe's answer to `question` satisfies `predicate`."""
        started = time.monotonic()
        while True:
            answer = self.ask(question)
            if predicate(answer):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not fresh after {timeout}s: {answer}")
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=20)


async def test_changes_reach_another_process_within_seconds(kb_database: str) -> None:
    async with crm_session(StoreSettings(database_url=kb_database, redis_url=REDIS_URL)) as crm:
        returns = await crm.knowledge.create_article(
            question="How do I return a teapot", answer="Send it back within 30 days.", language="en",
            external_id="returns", status="published",
        )
        probe = await asyncio.to_thread(Probe, kb_database)
        try:
            assert (await asyncio.to_thread(probe.read))["ready"]
            first = await asyncio.to_thread(probe.ask, "how do I return a teapot")
            assert (first["decision"], first["external_id"]) == ("answer", "returns")

            shipping = await crm.knowledge.create_article(
                question="Do you ship to Canada", answer="Yes, in 5 days.", language="en", external_id="canada",
            )
            await crm.knowledge.publish(article_id=shipping.id)
            published_s = await asyncio.to_thread(
                probe.until, "do you ship to canada", lambda a: a["external_id"] == "canada"
            )
            await crm.knowledge.update_article(article_id=shipping.id, answer="Yes, in 3 days now.")
            edited_s = await asyncio.to_thread(
                probe.until, "do you ship to canada", lambda a: a["answer"] == "Yes, in 3 days now."
            )
            await crm.knowledge.unpublish(article_id=returns.id)
            unpublished_s = await asyncio.to_thread(
                probe.until, "how do I return a teapot", lambda a: a["external_id"] != "returns"
            )
        finally:
            await asyncio.to_thread(probe.close)
    # polling every second (SQLite) or a kb.changed event on Redis: well within seconds either way
    assert max(published_s, edited_s, unpublished_s) < 5.0, (published_s, edited_s, unpublished_s)


async def test_changes_are_searchable_at_once_in_the_same_process(kb_database: str) -> None:
    async with crm_session(StoreSettings(database_url=kb_database, redis_url=REDIS_URL)) as crm:
        hashing = Encoders(SETTINGS, factory=lambda language: HashingEncoder())
        kb = await open_knowledge_base(crm, SETTINGS, encoders=hashing)
        assert kb.search("gift cards for tea").decision == "no_answer"

        article = await crm.knowledge.create_article(
            question="Do you sell gift cards for tea", answer="Yes, from 10 to 200 dollars.", language="en",
            external_id="gift", status="published",
        )
        started = time.monotonic()
        while (best := kb.search("gift cards for tea").best) is None or best.external_id != "gift":
            assert time.monotonic() - started < 1.0, "the kb.changed event did not refresh the index"
            await asyncio.sleep(0.01)
        assert kb.revision == await crm.knowledge.revision()

        await crm.knowledge.unpublish(article_id=article.id)
        started = time.monotonic()
        while kb.search("gift cards for tea").hits:
            assert time.monotonic() - started < 1.0, "unpublishing did not reach search"
            await asyncio.sleep(0.01)


async def test_a_restart_does_not_re_encode_unchanged_articles(kb_database: str) -> None:
    calls: list[int] = []

    class CountingEncoder(HashingEncoder):
        def encode_documents(self, texts: list[str]):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return super().encode_documents(texts)

    def encoders() -> Encoders:
        return Encoders(SETTINGS, factory=lambda language: CountingEncoder())

    async with crm_session(StoreSettings(database_url=kb_database)) as crm:
        for i in range(3):
            await crm.knowledge.create_article(question=f"Question number {i}", answer="An answer.", language="en",
                                               alt_questions=(f"Another way to ask {i}",), status="published")
        await open_knowledge_base(crm, SETTINGS, follow_changes=False, encoders=encoders())
        assert calls == [9]  # 3 articles x (question + 1 alternative + the answer's one sentence)

    calls.clear()
    async with crm_session(StoreSettings(database_url=kb_database)) as crm:  # "restart": a new process state
        kb = await open_knowledge_base(crm, SETTINGS, follow_changes=False, encoders=encoders())
        assert calls == []
        assert sum(len(s) for s in kb.segments.values()) == 3
        first = (await crm.knowledge.published_articles())[0]
        await crm.knowledge.update_article(article_id=first.id, answer="A better answer.")
        await kb.refresh()
        assert calls == [3]  # only the edited article's new version (two phrasings, one answer sentence)
