"""Settings of the bot (`KEFU_BOT_...`), built by the entry point and passed down."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.webchat_limit import MAX_BODY_BYTES, PER_ADDRESS, PER_VISITOR


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

    # The web chat: one visitor (visitor id) may post at most `webchat_visitor_messages` messages per
    # `webchat_visitor_window_s` seconds, one client address `webchat_address_messages` per `webchat_address_window_s`;
    # over either, HTTP 429 with Retry-After and the message is not handled (shared through Redis when it is set).
    webchat_visitor_messages: int = Field(default=PER_VISITOR.messages, ge=1)
    webchat_visitor_window_s: float = Field(default=PER_VISITOR.window_s, gt=0)
    webchat_address_messages: int = Field(default=PER_ADDRESS.messages, ge=1)
    webchat_address_window_s: float = Field(default=PER_ADDRESS.window_s, gt=0)
    # A web chat request whose body is larger than this many bytes is refused (HTTP 413) before it is read.
    webchat_max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=8 * 1024)

    # Outbound sending (every process that talks to Telegram shares these limits through Redis when it is set):
    # Telegram allows about 30 messages a second per bot and one a second per chat.
    send_per_second: float = Field(default=30.0, gt=0)
    chat_send_interval_s: float = Field(default=1.0, ge=0)
    # A 429 asking to wait longer than this is not waited out in line: the message is left for a later retry.
    retry_after_max_s: float = Field(default=60.0, gt=0)
    # The delivery worker: messages another worker took but did not confirm for this long are taken over.
    delivery_reclaim_after_s: float = Field(default=15.0, gt=0)
    # Deliveries in flight at once in one worker (different chats; one chat's messages always go in order).
    delivery_concurrency: int = Field(default=32, ge=1)
    # The worker's timers (survey expiry, SLA due): how often they run.
    timers_interval_s: float = Field(default=30.0, gt=0)
    # An agent's reply still unsent this long after it was written is announced to the workers again (its first
    # announcement was lost with Redis); a reply that was only slow is not sent twice.
    announce_again_after_s: float = Field(default=120.0, gt=0)
    # Stored Telegram updates not handled after this long (a process died mid-way) are handled again.
    redrive_after_s: float = Field(default=30.0, gt=0)
