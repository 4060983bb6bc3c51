"""Test helpers shared by every package's tests: a recording bus and factories (plain functions)."""

from __future__ import annotations

from crm_store.bus import Handler
from crm_store.events import DomainEvent


class RecordingBus:
    """An EventBus that keeps what was published, so a test can assert on it."""

    def __init__(self) -> None:
        self.published: list[DomainEvent] = []

    async def publish(self, event: DomainEvent) -> None:
        self.published.append(event)

    def subscribe(self, group: str, handler: Handler) -> None:  # pragma: no cover - not used by services
        raise NotImplementedError

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def of(self, event_type: type[DomainEvent]) -> list[DomainEvent]:
        return [e for e in self.published if isinstance(e, event_type)]
