"""CSV import of customers and orders: validation with line numbers, de-duplication, merges, idempotent re-import."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_store import models as m
from crm_store.crm import CRM
from crm_store.events import CustomerCreated, CustomersMerged, CustomerUpdated, PointsChanged
from crm_store.importing import ImportFileError, RowError, import_customers, import_orders

CUSTOMERS_HEADER = "name,email,phone,language,tags,marketing_consent,external_id\n"
ORDERS_HEADER = (
    "order_id,customer_email,customer_phone,customer_external_id,customer_name,amount,currency,placed_at,status,items\n"
)


@pytest.fixture
def crm(db, bus, settings) -> CRM:  # type: ignore[no-untyped-def]
    return CRM(db=db, events=bus, settings=settings)


async def count(crm: CRM, model: type[m.Base]) -> int:
    async with crm.db.sessionmaker() as s:
        return int(await s.scalar(select(func.count()).select_from(model)))


async def customers(crm: CRM) -> list[m.Customer]:
    async with crm.db.sessionmaker() as s:
        return list((await s.execute(select(m.Customer).order_by(m.Customer.id))).scalars())


async def active_customers(crm: CRM) -> list[m.Customer]:
    return [c for c in await customers(crm) if c.merged_into_id is None]


# --- customers -------------------------------------------------------------------------------------------


async def test_good_rows_load_and_bad_rows_are_named_with_line_and_reason(crm, tmp_csv) -> None:
    path = tmp_csv("customers.csv", CUSTOMERS_HEADER + "\n".join([
        "Ann Lee,ann@example.com,+1 415-555-0100,en,vip|newsletter,yes,C-1",  # line 2
        "Bad Mail,not-an-email,,en,,,",                                       # line 3
        "李娜,li.na@example.cn,+86 138 0013 8000,zh,会员;vip,no,C-2",         # line 4
        "Bad Phone,,12,en,,,",                                                # line 5
        "Bad Consent,bc@example.com,,en,,maybe,",                             # line 6
        "Bad Language,bl@example.com,,fr,,,",                                 # line 7
        "Nobody,,,en,,,",                                                     # line 8
        "Bo,bo@example.com,,,,,",                                             # line 9
    ]) + "\n")

    report = await import_customers(crm, path)

    assert [e.line for e in report.errors] == [3, 5, 6, 7, 8]
    reasons = {e.line: e.reason for e in report.errors}
    assert "e-mail" in reasons[3] and "not-an-email" in reasons[3]
    assert "phone" in reasons[5] and "'12'" in reasons[5]
    assert "marketing_consent" in reasons[6] and "maybe" in reasons[6]
    assert "language" in reasons[7] and "fr" in reasons[7]
    assert "email, a phone or an external_id" in reasons[8]
    assert (report.total, report.created, report.loaded) == (8, 3, 3)

    by_name = {c.name: c for c in await customers(crm)}
    assert set(by_name) == {"Ann Lee", "李娜", "Bo"}
    ann, li, bo = by_name["Ann Lee"], by_name["李娜"], by_name["Bo"]
    assert (ann.email_normalized, ann.phone_normalized, ann.external_ref) == ("ann@example.com", "+14155550100", "C-1")
    assert ann.tags == ["vip", "newsletter"] and ann.marketing_consent and ann.marketing_consent_at is not None
    assert (li.language, li.tags, li.phone_normalized) == ("zh", ["会员", "vip"], "+8613800138000")
    assert li.marketing_consent is False and li.marketing_consent_at is None
    assert bo.language == "en" and bo.marketing_consent is False


async def test_email_written_differently_updates_the_known_customer(crm, tmp_csv, bus) -> None:
    known = await crm.customers.create(name="Ann", email="ann@example.com")
    bus.published.clear()
    path = tmp_csv("c.csv", CUSTOMERS_HEADER + "Ann Lee,  ANN@Example.COM ,,,vip,,\n")

    report = await import_customers(crm, path)

    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    [only] = await customers(crm)
    assert only.id == known.id and only.name == "Ann Lee" and only.tags == ["vip"]
    assert only.email == "ann@example.com"  # the same address in another spelling is not a change
    assert [e.customer_id for e in bus.of(CustomerUpdated)] == [known.id] and not bus.of(CustomerCreated)


async def test_phone_written_differently_matches_with_the_region(crm, tmp_csv) -> None:
    assert crm.settings.phone_region == "US"
    known = await crm.customers.create(name="Carl", phone="+1 415-555-0100")
    path = tmp_csv("c.csv", CUSTOMERS_HEADER + "Carl,,(415) 555-0100,,,yes,\n")

    report = await import_customers(crm, path)

    assert (report.created, report.updated) == (0, 1)
    [only] = await customers(crm)
    assert only.id == known.id and only.marketing_consent and only.marketing_consent_at is not None


async def test_rows_of_one_person_in_one_file_make_one_customer(crm, tmp_csv) -> None:
    path = tmp_csv("c.csv", CUSTOMERS_HEADER + "\n".join([
        "Dan,dan@example.com,,,a,,",
        "Dan,DAN@example.com,(415) 555-0199,,b,,",
        "Daniel,,+14155550199,,,,",
    ]) + "\n")

    report = await import_customers(crm, path, batch_size=2)  # the rows span two batches

    assert (report.created, report.updated, report.merged, report.errors) == (1, 2, 0, [])
    [dan] = await customers(crm)
    assert (dan.name, dan.email_normalized, dan.phone_normalized) == ("Daniel", "dan@example.com", "+14155550199")
    assert dan.tags == ["a", "b"]


async def test_email_of_one_customer_and_phone_of_another_merges_them(crm, tmp_csv, bus) -> None:
    a = await crm.customers.create(name="Eve", email="eve@example.com")
    b = await crm.customers.create(name="Eve W", phone="+1 415 555 0111", tags=["chat"])
    await crm.orders.record_order(customer_id=b.id, external_ref="B-1", amount="30", placed_at=datetime.now(UTC))
    bus.published.clear()
    path = tmp_csv("c.csv", CUSTOMERS_HEADER + "Eve Wong,eve@example.com,415-555-0111,,,,\n")

    report = await import_customers(crm, path)

    assert (report.merged, report.created, report.total) == (1, 0, 1)
    [active] = await active_customers(crm)
    assert active.id == a.id
    assert (active.name, active.phone_normalized, active.tags) == ("Eve Wong", "+14155550111", ["chat"])
    merged = next(c for c in await customers(crm) if c.id == b.id)
    assert merged.merged_into_id == a.id
    assert [(e.source_id, e.target_id) for e in bus.of(CustomersMerged)] == [(b.id, a.id)]
    assert (await crm.orders.get(external_ref="B-1")).customer_id == a.id
    assert await crm.loyalty.ledger_sum(customer_id=a.id) == 30
    assert await count(crm, m.Customer) == 2


async def test_customers_with_different_external_ids_are_not_merged(crm, tmp_csv) -> None:
    await crm.customers.create(name="F1", email="f@example.com", external_ref="X-1")
    await crm.customers.create(name="F2", phone="+14155550122", external_ref="X-2")
    path = tmp_csv("c.csv", CUSTOMERS_HEADER + "F,f@example.com,+14155550122,,,,\n")

    report = await import_customers(crm, path)

    assert report.merged == 0 and [e.line for e in report.errors] == [2]
    assert "X-1" in report.errors[0].reason and "X-2" in report.errors[0].reason
    assert len(await active_customers(crm)) == 2


async def test_the_external_id_of_a_merged_customer_names_the_survivor(crm, tmp_csv) -> None:
    survivor = await crm.customers.create(name="Gus", email="gus@example.com", external_ref="G-1")
    merged = await crm.customers.create(name="Gus W", phone="+14155550144", external_ref="G-2")
    await crm.customers.merge(source_id=merged.id, target_id=survivor.id)

    report = await import_customers(crm, tmp_csv("c.csv", CUSTOMERS_HEADER + "Gustav,,,zh,,,G-2\n"))

    assert (report.updated, report.created, report.errors) == (1, 0, [])
    after = await crm.customers.get(customer_id=survivor.id)
    assert (after.name, after.language, after.external_ref) == ("Gustav", "zh", "G-1")
    assert await count(crm, m.Customer) == 2


async def test_reimporting_the_same_customers_file_changes_nothing(crm, tmp_csv, bus) -> None:
    path = tmp_csv("c.csv", CUSTOMERS_HEADER + "\n".join([
        "王小明,wang@example.cn,+86 139 0000 1111,zh,vip,yes,W-1",
        "Gil,GIL@example.com,(415) 555-0133,en,a;b,no,",
        "Gil,gil@example.com,,,,,",
        "Hal,,,,,,H-9",
        "broken,@,,,,,",
    ]) + "\n")
    first = await import_customers(crm, path)
    assert (first.created, first.updated + first.unchanged, len(first.errors)) == (3, 1, 1)
    rows_before = [(c.id, c.name, c.email, c.phone, c.tags, c.marketing_consent, c.marketing_consent_at,
                    c.updated_at) for c in await customers(crm)]
    bus.published.clear()

    again = await import_customers(crm, path)

    assert (again.total, again.unchanged, again.created, again.updated, again.merged) == (5, 4, 0, 0, 0)
    assert [e.line for e in again.errors] == [6]
    assert bus.published == []
    rows_after = [(c.id, c.name, c.email, c.phone, c.tags, c.marketing_consent, c.marketing_consent_at,
                   c.updated_at) for c in await customers(crm)]
    assert rows_after == rows_before
    assert "王小明" in [r[1] for r in rows_after]


async def test_a_consent_change_records_its_time(crm, tmp_csv) -> None:
    c = await crm.customers.create(name="Ida", email="ida@example.com", marketing_consent=True)
    report = await import_customers(crm, tmp_csv("c.csv", CUSTOMERS_HEADER + "Ida,ida@example.com,,,,no,\n"))
    after = await crm.customers.get(customer_id=c.id)
    assert report.updated == 1
    assert after.marketing_consent is False and after.marketing_consent_at > c.marketing_consent_at


async def test_bom_crlf_quotes_and_unknown_columns(crm, tmp_csv, tmp_path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "\ufeffExternal_ID,Name,Email,Notes\r\n"
        'J-1,"Lee, Jo",jo@example.com,"likes tea,\r\nand cake"\r\n'
        "\r\n"
        "J-2,Kim,,\r\n".encode()
    )
    report = await import_customers(crm, path)
    assert (report.total, report.created, report.errors) == (2, 2, [])
    assert [(c.external_ref, c.name) for c in await customers(crm)] == [("J-1", "Lee, Jo"), ("J-2", "Kim")]


async def test_a_file_without_its_header_is_refused_whole(crm, tmp_csv) -> None:
    no_header = tmp_csv("c.csv", "Ann,ann@example.com,,en,,,\n")
    with pytest.raises(ImportFileError, match="missing required column"):
        await import_customers(crm, no_header)
    orders = tmp_csv("o.csv", "order_id,customer_email,amount\nO-1,ann@example.com,10\n")
    with pytest.raises(ImportFileError, match="placed_at"):
        await import_orders(crm, orders)
    with pytest.raises(ImportFileError, match="empty"):
        await import_customers(crm, tmp_csv("e.csv", ""))
    assert await count(crm, m.Customer) == 0


async def test_a_file_that_is_not_utf8_is_refused_whole(crm, tmp_path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(CUSTOMERS_HEADER.encode() + "李娜,li@example.cn,,,,,\n".encode("gbk"))
    with pytest.raises(ImportFileError, match="line 2: not UTF-8"):
        await import_customers(crm, path)
    assert await count(crm, m.Customer) == 0


async def test_progress_goes_up_to_the_total(crm, tmp_csv) -> None:
    lines = [f"P{i},p{i}@example.com,,,,," for i in range(7)]
    path = tmp_csv("c.csv", CUSTOMERS_HEADER + "\n".join(lines) + "\n")
    calls: list[tuple[int, int]] = []

    report = await import_customers(crm, path, progress=lambda done, total: calls.append((done, total)), batch_size=3)

    assert report.created == 7
    assert calls == [(3, 7), (6, 7), (7, 7)]


# --- orders ----------------------------------------------------------------------------------------------


async def test_orders_award_points_that_match_the_ledger(crm, tmp_csv, bus) -> None:
    await import_customers(crm, tmp_csv("c.csv", CUSTOMERS_HEADER + "\n".join([
        "Ann,ann@example.com,+14155550100,,,,C-1",
        "Bo,bo@example.com,,,,,",
    ]) + "\n"))
    ann, bo = await customers(crm)
    bus.published.clear()
    path = tmp_csv("o.csv", ORDERS_HEADER + "\n".join([
        "O-1,,,C-1,,120.50,usd,2024-05-01,paid,Tea|Cup",
        "O-2,ANN@example.com,,,,80,,2024-05-02T10:00:00+08:00,,",
        "O-3,,(415) 555-0100,,,19.99,CNY,2024-05-03 09:30:00,shipped,",
        "O-4,bo@example.com,,,,50,,2024-05-04,pending,",
        "O-5,bo@example.com,,,,45.5,,2024-05-05,completed,",
    ]) + "\n")

    report = await import_orders(crm, path)

    assert (report.total, report.created, report.unchanged, report.errors) == (5, 5, 0, [])
    # floor(120.50) + floor(80) + floor(19.99); a pending order earns nothing yet
    assert (await crm.loyalty.summary(customer_id=ann.id)).balance == 120 + 80 + 19
    assert await crm.loyalty.ledger_sum(customer_id=ann.id) == 219
    assert (await crm.loyalty.summary(customer_id=bo.id)).balance == 45
    assert await crm.loyalty.ledger_sum(customer_id=bo.id) == 45
    o1 = await crm.orders.get(external_ref="O-1")
    assert (o1.amount, o1.currency, o1.items, o1.points_awarded) == (Decimal("120.50"), "USD", ("Tea", "Cup"), 120)
    assert o1.placed_at == datetime(2024, 5, 1, tzinfo=UTC)
    assert (await crm.orders.get(external_ref="O-2")).placed_at == datetime(2024, 5, 2, 2, 0, tzinfo=UTC)
    assert (await crm.orders.get(external_ref="O-3")).placed_at == datetime(2024, 5, 3, 9, 30, tzinfo=UTC)
    assert (await crm.orders.get(external_ref="O-4")).status == "pending"
    changes = bus.of(PointsChanged)
    assert sorted((e.customer_id, e.delta) for e in changes) == [(ann.id, 219), (bo.id, 45)]  # one per account


async def test_reimporting_orders_awards_nothing_twice(crm, tmp_csv, bus) -> None:
    await crm.customers.create(name="Cy", email="cy@example.com")
    path = tmp_csv("o.csv", ORDERS_HEADER + "\n".join(
        f"R-{i},cy@example.com,,,,{10 + i},,2024-06-0{1 + i % 9},," for i in range(12)
    ) + "\n")
    first = await import_orders(crm, path, batch_size=5)
    [cy] = await customers(crm)
    balance = (await crm.loyalty.summary(customer_id=cy.id)).balance
    assert first.created == 12 and balance == sum(10 + i for i in range(12))
    ledger_rows = await count(crm, m.LoyaltyTransaction)
    bus.published.clear()

    again = await import_orders(crm, path, batch_size=5)

    assert (again.created, again.unchanged, again.errors) == (0, 12, [])
    assert (await crm.loyalty.summary(customer_id=cy.id)).balance == balance
    assert await crm.loyalty.ledger_sum(customer_id=cy.id) == balance
    assert await count(crm, m.LoyaltyTransaction) == ledger_rows
    assert await count(crm, m.Order) == 12
    assert bus.published == []


async def test_an_order_for_an_unknown_customer_creates_them(crm, tmp_csv, bus) -> None:
    path = tmp_csv("o.csv", ORDERS_HEADER + "\n".join([
        "N-1,new@example.com,,N-C,张伟,25,,2024-07-01,,",
        "N-2,NEW@example.com,,,,5,,2024-07-02,,",
        "N-3,,,GHOST,,5,,2024-07-02,,",
    ]) + "\n")

    report = await import_orders(crm, path)

    assert (report.created, report.customers_created) == (2, 1)
    assert report.errors == [RowError(4, report.errors[0].reason)] and "GHOST" in report.errors[0].reason
    [new] = await customers(crm)
    assert (new.name, new.email_normalized, new.external_ref) == ("张伟", "new@example.com", "N-C")
    assert (await crm.orders.get(external_ref="N-2")).customer_id == new.id
    assert await crm.loyalty.ledger_sum(customer_id=new.id) == 30
    assert [e.customer_id for e in bus.of(CustomerCreated)] == [new.id]


async def test_a_known_order_creates_no_customer_even_when_its_contact_is_new(crm, tmp_csv) -> None:
    c = await crm.customers.create(name="Ed", email="ed@example.com")
    await crm.orders.record_order(customer_id=c.id, external_ref="K-1", amount="10", placed_at=datetime.now(UTC))
    path = tmp_csv("o.csv", ORDERS_HEADER + "K-1,ed.new@example.com,,,Ed,10,,2024-01-01,,\n")

    report = await import_orders(crm, path)

    assert (report.unchanged, report.created, report.customers_created, report.errors) == (1, 0, 0, [])
    assert await count(crm, m.Customer) == 1
    assert await crm.loyalty.ledger_sum(customer_id=c.id) == 10


async def test_bad_order_rows_are_named_and_the_rest_load(crm, tmp_csv) -> None:
    await crm.customers.create(name="Dee", email="dee@example.com")
    path = tmp_csv("o.csv", ORDERS_HEADER + "\n".join([
        "B-1,dee@example.com,,,,-5,,2024-01-01,,",          # 2 negative amount
        "B-2,dee@example.com,,,,ten,,2024-01-01,,",         # 3 not a number
        "B-3,dee@example.com,,,,10,DOLLARS,2024-01-01,,",   # 4 currency
        "B-4,dee@example.com,,,,10,,01/02/2024,,",          # 5 date
        "B-5,dee@example.com,,,,10,,2024-01-01,lost,",      # 6 status
        ",dee@example.com,,,,10,,2024-01-01,,",             # 7 no order id
        "B-6,dee@example.com,,,,10.999,,2024-01-01,,",      # 8 three decimals
        "B-7,dee@example.com,,,,10,,2024-01-01,,",          # 9 good
        "B-7,dee@example.com,,,,11,,2024-01-02,,",          # 10 repeated id
        "B-8,,,,,10,,2024-01-01,,",                          # 11 no customer
    ]) + "\n")

    report = await import_orders(crm, path)

    reasons = {e.line: e.reason for e in report.errors}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 10, 11]
    assert "positive" in reasons[2] and "'ten'" in reasons[3] and "currency" in reasons[4]
    assert "placed_at" in reasons[5] and "status" in reasons[6] and "order_id is required" in reasons[7]
    assert "decimal places" in reasons[8] and "line 9" in reasons[10] and "customer" in reasons[11]
    assert (report.total, report.created) == (10, 1)
    assert await count(crm, m.Order) == 1
