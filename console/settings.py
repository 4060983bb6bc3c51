"""Settings of the agent console (`KEFU_CONSOLE_...`), built by the entry point and passed down."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_CONSOLE_", extra="ignore")

    # How long a sign-in lasts (hours); the session ends then, whatever the agent is doing.
    session_hours: float = Field(default=12.0, gt=0)
    # The session cookie's Secure flag: auto sets it (and the __Host- name) on HTTPS requests only, so the demo on
    # http://127.0.0.1 works; true always (production behind TLS); false never. Behind a TLS-terminating proxy,
    # uvicorn's --forwarded-allow-ips makes X-Forwarded-Proto count for auto.
    cookie_secure: Literal["auto"] | bool = "auto"
    # Failed sign-ins allowed per e-mail and per client address within the window; then 429 until it ends.
    login_max_failures_per_email: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=20, ge=1)
    login_window_minutes: float = Field(default=15.0, gt=0)

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(hours=self.session_hours)

    @property
    def login_window(self) -> timedelta:
        return timedelta(minutes=self.login_window_minutes)
