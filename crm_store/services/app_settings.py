"""Console settings that admins change at run time (the assignment strategy, ...): one JSON value per key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.dto import AppSettingView
from crm_store.enums import Actor, AuditAction
from crm_store.services.audit import audit_in
from crm_store.services.base import Service


class AppSettingsService(Service):
    async def get_setting(self, key: str, default: Any = None) -> Any:
        """The stored value of `key`, or `default` when it was never set."""
        async with self.uow() as uow:
            row = await uow.session.get(m.AppSetting, key)
            return default if row is None else row.value

    async def set_setting(self, key: str, value: Any, *, by_agent_id: int | None) -> AppSettingView:
        """Store `value` (anything JSON can hold but null) under `key`, recording who changed it."""
        if value is None:
            raise ValueError("A setting's value cannot be null.")
        async with self.uow() as uow:
            row = await uow.session.get(m.AppSetting, key, with_for_update=True)
            audit_in(uow.session, action=AuditAction.SETTING_CHANGED,
                     actor=Actor.AGENT if by_agent_id is not None else Actor.SYSTEM, agent_id=by_agent_id,
                     subject_type="setting", subject_id=key,
                     details={"from": row.value if row is not None else None, "to": value})
            if row is None:
                row = m.AppSetting(key=key, value=value, updated_by_agent_id=by_agent_id)
                uow.session.add(row)
            else:
                row.value = value
                row.updated_by_agent_id = by_agent_id
                row.updated_at = utcnow()
            await uow.commit()
            return AppSettingView.of(row)

    async def list_settings(self) -> list[AppSettingView]:
        async with self.uow() as uow:
            rows = await uow.session.execute(select(m.AppSetting).order_by(m.AppSetting.key))
            return [AppSettingView.of(s) for s in rows.scalars()]
