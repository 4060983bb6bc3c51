"""`kefu customer export` and `kefu customer erase`, run for real against a fresh database."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from crm_store.enums import AuditAction
from tests.kefu.test_cli import assert_one_line_error, kefu, new_db, on_crm

__all__ = ["new_db"]  # the fixture, used by name


async def _seed(crm):  # type: ignore[no-untyped-def]
    await crm.conversations.record_incoming(channel="telegram", external_id="880", text="I'm Ottilie Brandvold")
    customer = (await crm.customers.search_page(query="880")).customers[0]
    await crm.customers.update_profile(customer_id=customer.id, name="Ottilie Brandvold",
                                       email="ottilie@example.com")
    return customer.id


def test_export_then_erase_from_the_shell(new_db: str, tmp_path: Path) -> None:
    assert kefu("db", "upgrade", cwd=tmp_path, database_url=new_db).returncode == 0
    customer_id = on_crm(new_db, _seed)

    as_json = kefu("customer", "export", str(customer_id), "--out", "c.json", cwd=tmp_path, database_url=new_db)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert document["tables"]["customers"][0]["email"] == "ottilie@example.com"
    assert (tmp_path / "c.json").stat().st_mode & 0o777 == 0o600
    as_zip = kefu("customer", "export", str(customer_id), "--out", "c.zip", cwd=tmp_path, database_url=new_db)
    assert as_zip.returncode == 0 and "messages.csv" in zipfile.ZipFile(
        io.BytesIO((tmp_path / "c.zip").read_bytes())).namelist()
    assert_one_line_error(kefu("customer", "export", str(customer_id), "--out", "c.txt", cwd=tmp_path,
                               database_url=new_db), ".json")

    unconfirmed = kefu("customer", "erase", str(customer_id), cwd=tmp_path, database_url=new_db)
    assert_one_line_error(unconfirmed, "--yes")
    erased = kefu("customer", "erase", str(customer_id), "--yes", cwd=tmp_path, database_url=new_db)
    assert erased.returncode == 0, erased.stderr
    assert f"Erased customer {customer_id}" in erased.stdout
    again = kefu("customer", "erase", str(customer_id), "--yes", cwd=tmp_path, database_url=new_db)
    assert_one_line_error(again, "already erased")
    assert_one_line_error(kefu("customer", "erase", "999999", "--yes", cwd=tmp_path, database_url=new_db), "999999")

    async def check(crm):  # type: ignore[no-untyped-def]
        customer = await crm.customers.get(customer_id=customer_id)
        entries = (await crm.audit.search(subject_type="customer", subject_id=str(customer_id))).entries
        return customer, entries

    customer, entries = on_crm(new_db, check)  # type: ignore[misc]
    assert customer.erased_at is not None and customer.email is None
    assert [e.action for e in entries] == [AuditAction.CUSTOMER_ERASED, AuditAction.CUSTOMER_EXPORTED,
                                           AuditAction.CUSTOMER_EXPORTED]
    assert entries[0].actor == "system" and entries[0].actor_label.startswith("kefu CLI (")
