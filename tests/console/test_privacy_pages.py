"""Privacy and audit in the console: an admin exports and erases a customer, sees erasure requests and the audit
log (filtered); other roles cannot; sign-ins, views, points, roles and settings are all recorded."""

from __future__ import annotations

import io
import json
import zipfile

from crm_store.enums import AuditAction
from tests.console.conftest import csrf_of, session_for, sign_in
from tests.crm_store.test_privacy import EMAIL, NAME, NEEDLES, seed_person
from tests.support import personal_data_left


async def test_an_admin_exports_then_erases_a_customer(client, crm, db, staff) -> None:  # type: ignore[no-untyped-def]
    customer_id, *_ = await seed_person(crm)
    await session_for(crm, staff.admin, client)
    page = await client.get(f"/customers/{customer_id}")
    assert page.status_code == 200 and 'id="privacy"' in page.text and NAME in page.text
    exported = await client.get(f"/customers/{customer_id}/export.json")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert json.loads(exported.content)["tables"]["customers"][0]["email"] == EMAIL
    zipped = await client.get(f"/customers/{customer_id}/export.csv")
    assert zipped.headers["content-type"] == "application/zip"
    assert "messages.csv" in zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert (await client.get(f"/customers/{customer_id}/export.xml")).status_code == 404
    assert (await client.get("/customers/999999/export.json")).status_code == 404

    csrf = csrf_of(page.text)
    refused = await client.post(f"/customers/{customer_id}/erase", data={"csrf_token": csrf, "confirm": "yes"})
    assert refused.status_code == 400 and f"type the customer&#39;s number ({customer_id})" in refused.text
    assert await personal_data_left(db, NEEDLES)  # nothing was erased
    done = await client.post(f"/customers/{customer_id}/erase", data={"csrf_token": csrf, "confirm": str(customer_id)})
    assert done.status_code == 303 and done.headers["location"] == f"/customers/{customer_id}?notice=erased"
    after = await client.get(done.headers["location"])
    assert 'id="erased-banner"' in after.text and NAME not in after.text and EMAIL not in after.text
    assert await personal_data_left(db, NEEDLES) == []
    again = await client.post(f"/customers/{customer_id}/erase", data={"csrf_token": csrf, "confirm": str(customer_id)})
    assert again.status_code == 400 and "already erased" in again.text

    log = await client.get(f"/admin/audit?customer={customer_id}")
    assert log.status_code == 200
    for action in ("customer.erased", "customer.exported", "customer.viewed"):
        assert f"<code>{action}</code>" in log.text
    assert staff.admin.email in log.text and NAME not in log.text


async def test_other_roles_may_not_export_erase_or_read_the_audit_log(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    customer = await crm.customers.create(name="Pat Private", email="pat@example.com")
    for agent in (staff.agent, staff.supervisor):
        client.cookies.clear()
        csrf = await session_for(crm, agent, client)
        page = await client.get(f"/customers/{customer.id}")
        assert page.status_code == 200 and 'id="privacy"' not in page.text
        assert (await client.get(f"/customers/{customer.id}/export.json")).status_code == 403
        erase = await client.post(f"/customers/{customer.id}/erase",
                                  data={"csrf_token": csrf, "confirm": str(customer.id)})
        assert erase.status_code == 403
        assert (await client.get("/admin/audit")).status_code == 403
        assert (await client.get("/admin/privacy")).status_code == 403
    assert (await crm.customers.get(customer_id=customer.id)).email == "pat@example.com"


async def test_the_audit_log_records_sign_ins_points_roles_and_settings_and_filters(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    customer = await crm.customers.create(name="Audited Customer")
    assert (await sign_in(client, staff.admin.email, "wrong password")).status_code == 401
    assert (await sign_in(client, staff.admin.email)).status_code == 303
    page = await client.get(f"/customers/{customer.id}")
    csrf = csrf_of(page.text)
    await client.post(f"/customers/{customer.id}/points", data={"csrf_token": csrf, "points": "25",
                                                                 "reason": "Goodwill", "key": "k1"})
    await client.post(f"/admin/agents/{staff.agent.id}", data={"csrf_token": csrf, "role": "supervisor"})
    await client.post("/admin/settings", data={"csrf_token": csrf, "assignment_strategy": "round_robin"})

    entries = (await crm.audit.search(limit=50)).entries
    by_action = {e.action: e for e in entries}
    assert by_action["login.failed"].actor_label == staff.admin.email and by_action["login.failed"].agent_id is None
    assert by_action["login"].agent_id == staff.admin.id
    assert by_action["points.adjusted"].details["points"] == 25
    assert by_action["agent.changed"].details == {"role": ["agent", "supervisor"]}
    assert by_action["setting.changed"].subject_id and by_action["setting.changed"].details["to"] == "round_robin"
    assert by_action["customer.viewed"].subject_id == str(customer.id)

    only_points = await client.get("/admin/audit?action=points")
    assert "<code>points.adjusted</code>" in only_points.text and "<code>login</code>" not in only_points.text
    logins = await client.get(f"/admin/audit?action=login&agent={staff.admin.id}")
    assert "<code>login</code>" in logins.text and "<code>login.failed</code>" not in logins.text
    bad = await client.get("/admin/audit?since=yesterday&customer=abc")
    assert bad.status_code == 400 and "Dates look like" in bad.text and "by number" in bad.text
    assert (await crm.audit.search(action=AuditAction.LOGOUT)).entries == ()


async def test_erasure_requests_wait_on_the_privacy_page(client, crm, staff) -> None:  # type: ignore[no-untyped-def]
    customer = await crm.customers.create(name="Rue Requester")
    await crm.privacy.request_erasure(customer_id=customer.id, channel="webchat")
    await session_for(crm, staff.admin, client)
    page = await client.get("/admin/privacy")
    assert page.status_code == 200 and "Rue Requester" in page.text and 'id="erasure-requests"' in page.text
