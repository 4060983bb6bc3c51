"""Settings of the NLU (`KEFU_NLU_...`), built by the entry point and passed down."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NluSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_NLU_", extra="ignore")

    # "kefu": the built-in pipeline (nlu.pipeline); "rasa": a running Rasa server's /model/parse.
    backend: Literal["kefu", "rasa"] = "kefu"
    # The trained Kefu model (`kefu nlu train --out`); unset: ./var/nlu-model.
    model_dir: str | None = None
    # The Rasa server for backend=rasa (scripts/rasa-server starts one on this machine).
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_timeout_s: float = Field(default=5.0, gt=0)
