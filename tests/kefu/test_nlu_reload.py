"""A bot process picks up an NLU model retrained by another process (the shared model folder) within seconds."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

from kefu.serve import _watch_nlu_model
from nlu.pipeline import NluModel
from nlu.service import LocalNlu
from nlu.settings import NluSettings


async def test_a_retrained_model_in_the_shared_folder_is_loaded_within_seconds(
    nlu_model_dir: Path, tmp_path: Path, encoders
) -> None:  # type: ignore[no-untyped-def]
    shared = tmp_path / "nlu-model"
    shutil.copytree(nlu_model_dir, shared)
    first = NluModel.load(shared, encoders=encoders)
    engine = SimpleNamespace(nlu=LocalNlu(first))
    stopping = asyncio.Event()
    watch = asyncio.create_task(_watch_nlu_model(engine, NluSettings(model_dir=str(shared)), encoders, stopping,
                                                 every_s=0.1))
    try:
        await asyncio.sleep(0.5)
        assert engine.nlu.model is first  # nothing changed: nothing reloaded
        # Another process retrains: a new model is written atomically into the shared folder.
        retrained = NluModel.load(nlu_model_dir, encoders=encoders)
        retrained.metadata["retrained_by"] = "another process"
        await asyncio.to_thread(retrained.persist, shared)
        deadline = time.monotonic() + 10
        while engine.nlu.model is first and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a swap
            await asyncio.sleep(0.1)
        assert engine.nlu.model is not first
        assert engine.nlu.model.metadata.get("retrained_by") == "another process"
        assert (await engine.nlu.parse("how long does shipping take?")).intent.name
    finally:
        stopping.set()
        await asyncio.wait_for(watch, 5)
