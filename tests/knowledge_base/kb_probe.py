"""A second Kefu process for the freshness test: follows the KB of KEFU_DATABASE_URL and answers searches.

Reads one question per line on stdin and prints one JSON line per question: the decision, the best hit's
external id and answer, and the index revision. Uses the hashing encoder so it starts in a second, not ten.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys


async def main() -> None:
    from crm_store.settings import StoreSettings
    from kefu.runtime import crm_session, open_knowledge_base
    from knowledge_base.encoder import HashingEncoder
    from knowledge_base.service import Encoders
    from knowledge_base.settings import KbSettings

    kb_settings = KbSettings(refresh_interval_s=float(os.environ.get("PROBE_REFRESH_S", "1.0")),
                             answer_at=0.5, suggest_at=0.2)
    async with crm_session(StoreSettings()) as crm:
        encoders = Encoders(kb_settings, factory=lambda language: HashingEncoder())
        kb = await open_knowledge_base(crm, kb_settings, encoders=encoders)
        stop = asyncio.Event()
        watcher = asyncio.create_task(kb.watch(stop=stop))
        print(json.dumps({"ready": True, "revision": kb.revision}), flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            result = kb.search(line.strip())
            best = result.best
            print(json.dumps({"decision": result.decision, "external_id": best.external_id if best else None,
                              "answer": best.answer if best else None, "revision": kb.revision}), flush=True)
        stop.set()
        await watcher


if __name__ == "__main__":
    asyncio.run(main())
