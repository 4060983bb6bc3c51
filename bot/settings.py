"""Settings of the bot (`KEFU_BOT_...`), built by the entry point and passed down."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_BOT_", extra="ignore")

    # The bot's token from @BotFather; unset: no Telegram (the web chat still works).
    telegram_token: SecretStr | None = None
    # Another Bot API server instead of api.telegram.org (a local telegram-bot-api, or a test's fake one).
    telegram_api_base: str | None = None
    # Webhook mode: Telegram posts updates to this public HTTPS base URL; unset: long polling.
    webhook_url: str | None = None
    # Checked on every webhook request (Telegram's X-Telegram-Bot-Api-Secret-Token header).
    webhook_secret: SecretStr | None = None
    # No answer this many times in a row: a person takes over (VIP tiers: after the first).
    fallbacks_before_handoff: int = Field(default=2, ge=1)
    # Per-chat throttle: at most this many messages per window.
    throttle_messages: int = Field(default=8, ge=1)
    throttle_window_s: float = Field(default=10.0, gt=0)
