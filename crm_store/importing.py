"""CSV import of customers and orders: each row validated, matched to the CRM's customers, loaded in batches.

A customer row matches an active customer by external id, else by normalized e-mail, else by normalized phone;
a row whose e-mail and phone point at two customers merges them. Orders are recorded once by their reference
and earn points through `add_orders`, so re-importing a file changes nothing. Each batch is one transaction;
its events are published after it commits. Contact keys of every customer are read once, up front, so a batch
costs a handful of queries whatever its size.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import IO, TypeAlias

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm_store import models as m
from crm_store.coltypes import utcnow
from crm_store.contacts import normalize_email, normalize_phone
from crm_store.crm import CRM
from crm_store.enums import OrderStatus
from crm_store.errors import ConflictError
from crm_store.events import CustomerCreated, CustomerUpdated
from crm_store.services.customers import merge_in
from crm_store.services.ledger import chunks
from crm_store.services.orders import NewOrder, add_orders, points_for
from crm_store.uow import UnitOfWork, unit_of_work

Progress = Callable[[int, int], None]

CUSTOMER_COLUMNS = ("name", "email", "phone", "language", "tags", "marketing_consent", "external_id")
ORDER_COLUMNS = (
    "order_id", "customer_email", "customer_phone", "customer_external_id", "customer_name",
    "amount", "currency", "placed_at", "status", "items",
)
LANGUAGES = ("en", "zh")
_CONSENT = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
_TAG_SEPARATORS = re.compile(r"[|;]")
_MAX_AMOUNT = Decimal(10) ** 10  # orders.amount is NUMERIC(12, 2)
_MAX_POINTS = 2**31 - 1  # orders.points_awarded and the loyalty ledger are 32-bit integers in PostgreSQL
# Column widths of the schema: PostgreSQL refuses longer values, so they are row errors, not a failed batch.
_MAX_LEN = {"name": 200, "email": 254, "phone": 40, "external_id": 100, "order_id": 100}


class ImportFileError(ValueError):
    """The file as a whole cannot be imported: no header, missing columns, not UTF-8 text or a NUL character (found
    before anything is written), or broken CSV (found where it is read: the batches before it stay loaded)."""


@dataclass(frozen=True)
class RowError:
    line: int  # physical line in the file; the header is line 1
    reason: str


@dataclass
class ImportReport:
    kind: str
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    errors: list[RowError] = field(default_factory=list)
    customers_created: int = 0  # orders import: customers created for orders whose customer was unknown

    @property
    def loaded(self) -> int:
        return self.created + self.updated + self.unchanged + self.merged

    def summary(self) -> str:
        """One line for people: what happened to the file's rows."""
        parts = [f"{self.created} created"]
        if self.kind == "customers":
            parts += [f"{self.updated} updated", f"{self.unchanged} unchanged", f"{self.merged} merged"]
        else:
            parts += [f"{self.unchanged} already there"]
            if self.customers_created:
                parts.append(f"{self.customers_created} new customers")
        parts.append(f"{len(self.errors)} rejected")
        return f"{self.kind}: {self.total} rows, " + ", ".join(parts)


async def import_customers(
    crm: CRM, path: Path, *, progress: Progress | None = None, batch_size: int = 1000
) -> ImportReport:
    """Create or update customers from a customers CSV, merging the ones a row shows to be one person."""
    importer = _CustomerImport(crm)
    return await _run(importer, Path(path), _CUSTOMERS_FORMAT, progress, batch_size)


async def import_orders(
    crm: CRM, path: Path, *, progress: Progress | None = None, batch_size: int = 1000
) -> ImportReport:
    """Record the new orders of an orders CSV and award their points; known order ids are left alone."""
    importer = _OrderImport(crm)
    return await _run(importer, Path(path), _ORDERS_FORMAT, progress, batch_size)


# --- reading the file ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Format:
    kind: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    one_of: tuple[str, ...]  # at least one of these columns must be in the header


_CUSTOMERS_FORMAT = _Format("customers", CUSTOMER_COLUMNS, (), ("email", "phone", "external_id"))
_ORDERS_FORMAT = _Format(
    "orders", ORDER_COLUMNS, ("order_id", "amount", "placed_at"),
    ("customer_email", "customer_phone", "customer_external_id"),
)


@dataclass(frozen=True)
class _Record:
    line: int
    values: dict[str, str]  # the format's columns, stripped; "" when absent
    extra_fields: int  # non-empty fields beyond the header (usually an unquoted comma)


class _CsvFile:
    """A CSV file opened for import: header checked on entry, then read in batches of records."""

    def __init__(self, path: Path, fmt: _Format) -> None:
        self.path = path
        self.fmt = fmt
        self.lines_read = 0
        self._file: IO[str] | None = None

    def __enter__(self) -> _CsvFile:
        self._file = self.path.open(encoding="utf-8-sig", newline="")
        try:
            self._reader = csv.reader(self._file)
            header = self._next()
            if header is None:
                raise ImportFileError(f"{self.path.name} is empty: a header row is required")
            names = [h.strip().lower() for h in header]
            self._width = len(names)
            self._positions: dict[str, int] = {}
            for i, name in enumerate(names):
                if name in self.fmt.columns:
                    self._positions.setdefault(name, i)
            self._check_header()
        except BaseException:
            self._file.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()

    def _check_header(self) -> None:
        missing = [c for c in self.fmt.required if c not in self._positions]
        if not any(c in self._positions for c in self.fmt.one_of):
            missing.append(" or ".join(self.fmt.one_of))
        if missing:
            raise ImportFileError(
                f"{self.path.name}: missing required column(s): {', '.join(missing)}. "
                f"The first line must be a header row, e.g. {','.join(self.fmt.columns)}"
            )

    def _next(self) -> list[str] | None:
        try:
            return next(self._reader, None)
        except csv.Error as exc:
            raise ImportFileError(f"{self.path.name}, line {self._reader.line_num}: {exc}") from exc

    def batches(self, size: int) -> Iterator[list[_Record]]:
        """Records (blank lines skipped), `size` at a time; `lines_read` is the data lines read so far."""
        batch: list[_Record] = []
        start = self._reader.line_num + 1
        positions = self._positions.items()
        while (fields := self._next()) is not None:
            line, start = start, self._reader.line_num + 1
            self.lines_read = self._reader.line_num - 1
            if not any(f.strip() for f in fields):
                continue
            n = len(fields)
            values = {c: fields[i].strip() if i < n else "" for c, i in positions}
            extra = sum(1 for f in fields[self._width :] if f.strip())
            batch.append(_Record(line, values, extra))
            if len(batch) >= size:
                yield batch
                batch = []
        self.lines_read = max(self._reader.line_num - 1, 0)
        if batch:
            yield batch


def _count_data_lines(path: Path) -> int:
    """Lines after the header, counted fast for the progress bar; refuses a file that is not UTF-8 text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines, last = 0, b""
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    line = lines + chunk[: max(exc.start, 0)].count(b"\n") + 1
                    raise ImportFileError(f"{path.name}, line {line}: not UTF-8 text (save the file as UTF-8)") from exc
                if (nul := chunk.find(b"\x00")) >= 0:  # Python's csv reads it; PostgreSQL stores no NUL in text
                    line = lines + chunk[:nul].count(b"\n") + 1
                    raise ImportFileError(f"{path.name}, line {line}: a NUL character: not a text file "
                                          "(save the file as UTF-8 CSV)")
                lines += chunk.count(b"\n")
                last = chunk[-1:]
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path.name}: not UTF-8 text (it ends inside a character)") from exc
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if last and last not in (b"\n", b"\r"):
        lines += 1
    return max(lines - 1, 0)


async def _run(
    importer: _CustomerImport | _OrderImport, path: Path, fmt: _Format, progress: Progress | None, batch_size: int
) -> ImportReport:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    total = await asyncio.to_thread(_count_data_lines, path)
    reported = -1
    with _CsvFile(path, fmt) as csv_file:
        await importer.prepare()
        for batch in csv_file.batches(batch_size):
            await importer.load(batch)
            if progress is not None:
                reported = min(csv_file.lines_read, total)
                progress(reported, total)
    if progress is not None and reported != total:
        progress(total, total)
    importer.report.errors.sort(key=lambda e: e.line)
    return importer.report


# --- validating rows -------------------------------------------------------------------------------------


class _Invalid(ValueError):
    """Why a row cannot be loaded (its RowError's reason)."""


class _Checker:
    """Validates one row's fields, collecting every problem; phone numbers are parsed once per spelling."""

    def __init__(self, region: str, phones: dict[str, str | ValueError | None]) -> None:
        self.region = region
        self.phones = phones
        self.problems: list[str] = []

    def text(self, values: dict[str, str], column: str, limit_key: str | None = None) -> str:
        value = values.get(column, "")
        limit = _MAX_LEN.get(limit_key or column)
        if limit is not None and len(value) > limit:
            self.problems.append(f"{column} is longer than {limit} characters")
            return ""
        return value

    def email(self, values: dict[str, str], column: str) -> tuple[str | None, str | None]:
        raw = self.text(values, column, "email")
        try:
            normalized = normalize_email(raw)
        except ValueError as exc:
            self.problems.append(f"{column}: {exc}")
            return None, None
        if normalized is not None and len(normalized) > _MAX_LEN["email"]:  # lower-casing İ gives two characters
            self.problems.append(f"{column} is longer than {_MAX_LEN['email']} characters once lower-cased")
            return None, None
        return (raw or None), normalized

    def phone(self, values: dict[str, str], column: str) -> tuple[str | None, str | None]:
        raw = self.text(values, column, "phone")
        if not raw:
            return None, None
        if raw not in self.phones:
            try:
                self.phones[raw] = normalize_phone(raw, self.region)
            except ValueError as exc:
                self.phones[raw] = exc
        found = self.phones[raw]
        if isinstance(found, ValueError):
            self.problems.append(f"{column}: {found}")
            return None, None
        return raw, found

    def done(self, record: _Record) -> None:
        if record.extra_fields:
            self.problems.append("more fields than the header has columns (an unquoted comma?)")
        if self.problems:
            raise _Invalid("; ".join(self.problems))


@dataclass(frozen=True)
class _CustomerRow:
    line: int
    name: str
    email: str | None
    email_n: str | None
    phone: str | None
    phone_n: str | None
    language: str | None  # None: not given (a new customer gets "en", a known one keeps theirs)
    tags: tuple[str, ...]
    consent: bool | None  # None: not given
    ref: str | None

    def contact_keys(self) -> list[tuple[str, str]]:
        return _keys(self.ref, self.email_n, self.phone_n)


def _parse_customer(record: _Record, check: _Checker) -> _CustomerRow:
    v = record.values
    name = check.text(v, "name")
    email, email_n = check.email(v, "email")
    phone, phone_n = check.phone(v, "phone")
    ref = check.text(v, "external_id") or None
    language = v.get("language", "").lower() or None
    if language is not None and language not in LANGUAGES:
        check.problems.append(f"language must be one of {', '.join(LANGUAGES)}, not {v['language']!r}")
    consent_text = v.get("marketing_consent", "")
    consent = _CONSENT.get(consent_text.lower())
    if consent_text and consent is None:
        check.problems.append(f"marketing_consent must be yes/no/true/false/1/0, not {consent_text!r}")
    tags = tuple(dict.fromkeys(t.strip() for t in _TAG_SEPARATORS.split(v.get("tags", "")) if t.strip()))
    if not (email_n or phone_n or ref) and not check.problems:
        check.problems.append("needs an email, a phone or an external_id")
    check.done(record)
    return _CustomerRow(record.line, name, email, email_n, phone, phone_n, language, tags, consent, ref)


@dataclass(frozen=True)
class _OrderRow:
    line: int
    ref: str
    customer_ref: str | None
    email: str | None
    email_n: str | None
    phone: str | None
    phone_n: str | None
    customer_name: str
    amount: Decimal
    currency: str
    placed_at: datetime
    status: OrderStatus
    items: tuple[str, ...]


def _parse_order(record: _Record, check: _Checker) -> _OrderRow:
    v = record.values
    ref = check.text(v, "order_id")
    if not v.get("order_id"):
        check.problems.append("order_id is required")
    customer_ref = check.text(v, "customer_external_id", "external_id") or None
    email, email_n = check.email(v, "customer_email")
    phone, phone_n = check.phone(v, "customer_phone")
    if not (customer_ref or email_n or phone_n) and not check.problems:
        check.problems.append("needs customer_external_id, customer_email or customer_phone")
    customer_name = check.text(v, "customer_name", "name")
    amount = _parse_amount(v.get("amount", ""), check.problems)
    currency = (v.get("currency") or "USD").upper()
    if not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        check.problems.append(f"currency must be 3 letters (like USD or CNY), not {v['currency']!r}")
    placed_at = _parse_when(v.get("placed_at", ""), check.problems)
    status_text = (v.get("status") or OrderStatus.PAID.value).lower()
    try:
        status = OrderStatus(status_text)
    except ValueError:
        status = OrderStatus.PAID
        check.problems.append(f"status must be one of {', '.join(s.value for s in OrderStatus)}, not {v['status']!r}")
    items = tuple(i.strip() for i in v.get("items", "").split("|") if i.strip())
    check.done(record)
    return _OrderRow(record.line, ref, customer_ref, email, email_n, phone, phone_n, customer_name, amount,
                     currency, placed_at, status, items)


def _parse_amount(text: str, problems: list[str]) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        problems.append(f"amount must be a number like 12.50, not {text!r}" if text else "amount is required")
        return Decimal(0)
    if not amount.is_finite() or amount <= 0:
        problems.append(f"amount must be positive, not {text!r}")
    elif amount >= _MAX_AMOUNT:
        problems.append(f"amount {text} is too large")
    elif amount.as_tuple().exponent < -2:  # type: ignore[operator]
        problems.append(f"amount {text} has more than 2 decimal places")
    return amount


def _parse_when(text: str, problems: list[str]) -> datetime:
    if not text:
        problems.append("placed_at is required")
        return utcnow()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"placed_at must be an ISO 8601 date or date-time (2024-05-01T10:30:00Z), not {text!r}")
        return utcnow()
    try:
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 is before the first UTC moment Python can hold
        problems.append(f"placed_at {text!r} is out of range")
        return utcnow()


# --- who is who ------------------------------------------------------------------------------------------

# A customer known by id, or (inside the batch that creates or loads it) the ORM object itself.
_Handle: TypeAlias = "int | m.Customer"
_Key = tuple[str, str]


def _keys(ref: str | None, email_n: str | None, phone_n: str | None) -> list[_Key]:
    found = [("ref", ref), ("email", email_n), ("phone", phone_n)]
    return [(kind, value) for kind, value in found if value]


class _People:
    """The import's memory of every active customer's contact keys: (ref|email|phone, value) -> customer.

    Read once from the database; kept current as rows create, change and merge customers. Inside a batch a key
    may point at an ORM object not yet flushed; `settle()` turns those into ids once the batch has committed.
    """

    def __init__(self) -> None:
        self._by_key: dict[_Key, _Handle] = {}
        self._touched: set[_Key] = set()

    @classmethod
    async def load(cls, session: AsyncSession) -> _People:
        people = cls()
        c = m.Customer
        rows = (await session.execute(
            select(c.id, c.external_ref, c.email_normalized, c.phone_normalized, c.merged_into_id).order_by(c.id)
        )).all()
        merged_into = {cid: parent for cid, _, _, _, parent in rows if parent is not None}
        for cid, ref, email_n, phone_n, parent in rows:
            if parent is None:
                for key in _keys(ref, email_n, phone_n):
                    people._by_key.setdefault(key, cid)  # the oldest customer wins a shared e-mail or phone
            elif ref:  # an external id kept by a merged customer names the customer it was merged into
                people._by_key[("ref", ref)] = _root(cid, merged_into)
        return people

    def get(self, key: _Key) -> _Handle | None:
        return self._by_key.get(key)

    def ids(self, keys: Sequence[_Key]) -> set[int]:
        return {h for k in keys if isinstance(h := self._by_key.get(k), int)}

    def points_to(self, key: _Key, customer: m.Customer) -> bool:
        handle = self._by_key.get(key)
        return handle is customer or (customer.id is not None and handle == customer.id)

    def put(self, key: _Key, customer: m.Customer) -> None:
        self._by_key[key] = customer
        self._touched.add(key)

    def drop(self, key: _Key, customer: m.Customer) -> None:
        if self.points_to(key, customer):
            del self._by_key[key]
            self._touched.discard(key)

    def settle(self) -> None:
        for key in self._touched:
            handle = self._by_key.get(key)
            if isinstance(handle, m.Customer):
                self._by_key[key] = handle.id
        self._touched.clear()


def _root(cid: int, merged_into: dict[int, int]) -> int:
    seen = {cid}
    while (parent := merged_into.get(cid)) is not None and parent not in seen:
        seen.add(parent)
        cid = parent
    return cid


def _customer_keys(c: m.Customer) -> list[_Key]:
    return _keys(c.external_ref, c.email_normalized, c.phone_normalized)


# --- customers -------------------------------------------------------------------------------------------


class _CustomerImport:
    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        self.report = ImportReport(kind="customers")
        self.people = _People()
        self._phones: dict[str, str | ValueError | None] = {}
        self._batches = 0

    async def prepare(self) -> None:
        async with unit_of_work(self.crm.db, self.crm.events) as uow:
            self.people = await _People.load(uow.session)

    async def load(self, batch: list[_Record]) -> None:
        rows: list[_CustomerRow] = []
        for record in batch:
            self.report.total += 1
            try:
                rows.append(_parse_customer(record, _Checker(self.crm.settings.phone_region, self._phones)))
            except _Invalid as exc:
                self.report.errors.append(RowError(record.line, str(exc)))
        if not rows:
            return
        async with unit_of_work(self.crm.db, self.crm.events) as uow:
            run = _CustomerBatch(uow, self.people)
            await run.load_matches([k for row in rows for k in row.contact_keys()])
            outcomes: list[str] = []
            for row in rows:
                try:
                    outcomes.append(await run.apply(row))
                except _Invalid as exc:
                    self.report.errors.append(RowError(row.line, str(exc)))
            await run.finish()
            await uow.commit()
        self.people.settle()
        for outcome in outcomes:
            setattr(self.report, outcome, getattr(self.report, outcome) + 1)
        self._batches += 1
        await _refresh_statistics(self.crm, self._batches, ("customers",))


class _CustomerBatch:
    """One batch of customer rows, inside one unit of work."""

    def __init__(self, uow: UnitOfWork, people: _People) -> None:
        self.uow = uow
        self.session = uow.session
        self.people = people
        self.loaded: dict[int, m.Customer] = {}
        self.created: list[m.Customer] = []
        self.announced = 0  # how many of `created` have had their CustomerCreated emitted
        self.updated: set[int] = set()

    async def load_matches(self, keys: Sequence[_Key]) -> None:
        """Read, in a few queries, every existing customer the batch's rows can match."""
        for part in chunks(sorted(self.people.ids(keys))):
            found = await self.session.execute(select(m.Customer).where(m.Customer.id.in_(part)))
            self.loaded.update((c.id, c) for c in found.scalars())

    async def customer(self, handle: _Handle | None) -> m.Customer | None:
        if handle is None or isinstance(handle, m.Customer):
            return handle
        if handle not in self.loaded:  # a key that changed hands earlier in this batch
            self.loaded[handle] = await self.session.get_one(m.Customer, handle)
        return self.loaded[handle]

    async def apply(self, row: _CustomerRow) -> str:
        """Create, update or merge for one row; returns the ImportReport counter it adds to."""
        ref_hit = await self.customer(self.people.get(("ref", row.ref)) if row.ref else None)
        hits: list[m.Customer] = []
        for key in row.contact_keys():
            hit = ref_hit if key[0] == "ref" else await self.customer(self.people.get(key))
            if hit is not None and all(hit is not h for h in hits):
                hits.append(hit)
        if not hits:
            self._create(row)
            return "created"
        target, others = hits[0], hits[1:]
        refs = {c.external_ref for c in hits if c.external_ref}
        if row.ref and ref_hit is None:
            refs.add(row.ref)
        if len(refs) > 1:
            raise _Invalid(
                f"this row matches customers with different external ids ({', '.join(sorted(refs))}); "
                "not merged: fix the file or merge them in the console"
            )
        for other in others:
            await self._merge(source=other, target=target)
        changed = self._update(target, row)
        if changed and not any(target is c for c in self.created):
            self.updated.add(target.id)
        if others:
            return "merged"
        return "updated" if changed else "unchanged"

    def _create(self, row: _CustomerRow) -> None:
        customer = m.Customer(
            name=row.name, email=row.email, phone=row.phone, email_normalized=row.email_n,
            phone_normalized=row.phone_n, language=row.language or "en", tags=list(row.tags),
            marketing_consent=bool(row.consent), marketing_consent_at=utcnow() if row.consent else None,
            external_ref=row.ref,
        )
        self.session.add(customer)
        self.created.append(customer)
        for key in row.contact_keys():
            self.people.put(key, customer)

    async def _merge(self, *, source: m.Customer, target: m.Customer) -> None:
        await self._announce_created()  # both need ids; and CustomerCreated must precede CustomersMerged
        source_keys = _customer_keys(source)
        try:
            await merge_in(self.uow, source_id=source.id, target_id=target.id)
        except ConflictError as exc:
            raise _Invalid(str(exc)) from exc
        for key in source_keys:
            if self.people.points_to(key, source):
                self.people.put(key, target)
        self.updated.discard(source.id)

    def _update(self, c: m.Customer, row: _CustomerRow) -> bool:
        """Apply what the row says to a known customer; True when anything changed."""
        before = (c.name, c.email_normalized, c.phone_normalized, c.language, list(c.tags or []),
                  c.marketing_consent, c.external_ref)
        if row.name:
            c.name = row.name
        if row.email_n and row.email_n != c.email_normalized:
            self._rekey(c, "email", c.email_normalized, row.email_n)
            c.email, c.email_normalized = row.email, row.email_n
        if row.phone_n and row.phone_n != c.phone_normalized:
            self._rekey(c, "phone", c.phone_normalized, row.phone_n)
            c.phone, c.phone_normalized = row.phone, row.phone_n
        if row.language:
            c.language = row.language
        tags = list(c.tags or [])
        if missing := [t for t in row.tags if t not in tags]:
            c.tags = tags + missing  # a new list: the JSON column does not track in-place changes
        if row.consent is not None and row.consent != c.marketing_consent:
            c.marketing_consent, c.marketing_consent_at = row.consent, utcnow()
        if row.ref and c.external_ref is None:
            c.external_ref = row.ref
            self.people.put(("ref", row.ref), c)
        after = (c.name, c.email_normalized, c.phone_normalized, c.language, list(c.tags or []),
                 c.marketing_consent, c.external_ref)
        return after != before

    def _rekey(self, c: m.Customer, kind: str, old: str | None, new: str) -> None:
        if old:
            self.people.drop((kind, old), c)
        self.people.put((kind, new), c)

    async def _announce_created(self) -> None:
        if self.announced == len(self.created):
            return
        await self.session.flush()
        for customer in self.created[self.announced :]:
            self.uow.emit(CustomerCreated(customer_id=customer.id))
        self.announced = len(self.created)

    async def finish(self) -> None:
        await self._announce_created()
        await self.session.flush()
        for cid in sorted(self.updated):
            self.uow.emit(CustomerUpdated(customer_id=cid))


# --- orders ----------------------------------------------------------------------------------------------


class _OrderImport:
    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        self.report = ImportReport(kind="orders")
        self.people = _People()
        self._phones: dict[str, str | ValueError | None] = {}
        self._first_line: dict[str, int] = {}  # order id -> the line it first appeared on
        self._batches = 0

    async def prepare(self) -> None:
        async with unit_of_work(self.crm.db, self.crm.events) as uow:
            self.people = await _People.load(uow.session)

    async def load(self, batch: list[_Record]) -> None:
        rows: list[_OrderRow] = []
        for record in batch:
            self.report.total += 1
            try:
                row = _parse_order(record, _Checker(self.crm.settings.phone_region, self._phones))
            except _Invalid as exc:
                self.report.errors.append(RowError(record.line, str(exc)))
                continue
            if (first := self._first_line.setdefault(row.ref, row.line)) != row.line:
                self.report.errors.append(RowError(row.line, f"order_id {row.ref!r} repeats line {first}"))
                continue
            rows.append(row)
        if not rows:
            return
        async with unit_of_work(self.crm.db, self.crm.events) as uow:
            session = uow.session
            placed: list[tuple[_OrderRow, _Handle]] = []
            strangers: list[_OrderRow] = []
            for row in rows:
                who = self._known_customer(row)
                if who is None:
                    strangers.append(row)
                else:
                    placed.append((row, who))
            new_customers: list[m.Customer] = []
            if strangers:
                # A customer is created only for an order that is really new (add_orders skips the others).
                present = await _present_orders(session, [r.ref for r in strangers])
                self.report.unchanged += len(present)
                for row in strangers:
                    if row.ref in present:
                        continue
                    try:  # an earlier row of this batch may have created the customer already
                        who = self._known_customer(row)
                        placed.append((row, who if who is not None else self._new_customer(row, new_customers)))
                    except _Invalid as exc:
                        self.report.errors.append(RowError(row.line, str(exc)))
                placed.sort(key=lambda p: p[0].line)
            placed = await self._within_points_limit(session, placed)
            if new_customers:
                session.add_all(new_customers)
                await session.flush()
                for customer in new_customers:
                    uow.emit(CustomerCreated(customer_id=customer.id))
            orders = [
                NewOrder(
                    customer_id=who if isinstance(who, int) else who.id, external_ref=row.ref, amount=row.amount,
                    currency=row.currency, placed_at=row.placed_at, status=row.status, items=list(row.items),
                )
                for row, who in placed
            ]
            added, events = await add_orders(session, self.crm.settings, orders)
            for event in events:
                uow.emit(event)
            await uow.commit()
        self.people.settle()
        self.report.unchanged += len(orders) - len(added)
        self.report.created += len(added)
        self.report.customers_created += len(new_customers)
        self._batches += 1
        await _refresh_statistics(self.crm, self._batches, ("orders", "loyalty_transactions", "loyalty_accounts"))

    async def _within_points_limit(
        self, session: AsyncSession, placed: list[tuple[_OrderRow, _Handle]]
    ) -> list[tuple[_OrderRow, _Handle]]:
        """The rows whose points keep their customer's balance within what the ledger holds; the others (a new
        order of an absurd amount) become row errors instead of failing the batch in the database."""
        earned = [points_for(self.crm.settings, amount=row.amount, status=row.status) for row, _ in placed]
        if not any(earned):
            return placed
        totals: dict[int, int] = {}  # id(handle) or customer id -> the most points the account holds so far
        known = sorted({who for _, who in placed if isinstance(who, int)})
        for part in chunks(known):
            rows = await session.execute(select(m.LoyaltyAccount.customer_id, m.LoyaltyAccount.balance,
                                                m.LoyaltyAccount.lifetime_points)
                                         .where(m.LoyaltyAccount.customer_id.in_(part)))
            totals.update((cid, max(balance, lifetime)) for cid, balance, lifetime in rows)
        kept: list[tuple[_OrderRow, _Handle]] = []
        over: list[tuple[_OrderRow, _Handle]] = []
        for (row, who), points in zip(placed, earned, strict=True):
            key = who if isinstance(who, int) else id(who)
            if points and totals.get(key, 0) + points > _MAX_POINTS:
                over.append((row, who))
                continue
            totals[key] = totals.get(key, 0) + points
            kept.append((row, who))
        present = await _present_orders(session, [row.ref for row, _ in over]) if over else set()
        for row, who in over:
            if row.ref in present:  # already recorded: it earns nothing again
                kept.append((row, who))
            else:
                self.report.errors.append(RowError(row.line, f"amount {row.amount} would take the customer's "
                                                             f"loyalty points past {_MAX_POINTS:,}"))
        return sorted(kept, key=lambda p: p[0].line)

    def _known_customer(self, row: _OrderRow) -> _Handle | None:
        """The order's customer, by external id, e-mail, then phone."""
        for key in _keys(row.customer_ref, row.email_n, row.phone_n):
            if (handle := self.people.get(key)) is not None:
                return handle
        return None

    def _new_customer(self, row: _OrderRow, new_customers: list[m.Customer]) -> m.Customer:
        if not (row.email_n or row.phone_n):
            raise _Invalid(
                f"no customer with external id {row.customer_ref!r} "
                "(give customer_email or customer_phone to create one)"
            )
        customer = m.Customer(
            name=row.customer_name, email=row.email, phone=row.phone, email_normalized=row.email_n,
            phone_normalized=row.phone_n, external_ref=row.customer_ref, language="en", tags=[],
            marketing_consent=False,
        )
        new_customers.append(customer)
        for key in _keys(row.customer_ref, row.email_n, row.phone_n):
            self.people.put(key, customer)
        return customer


async def _present_orders(session: AsyncSession, refs: Sequence[str]) -> set[str]:
    present: set[str] = set()
    for part in chunks(refs):
        found = await session.execute(select(m.Order.external_ref).where(m.Order.external_ref.in_(part)))
        present.update(found.scalars())
    return present


# --- PostgreSQL planning -----------------------------------------------------------------------------------
# A table that grew by 100,000 rows since it was last analyzed is planned as if it were small (the engine
# already asks PostgreSQL for custom plans: see crm_store.db), so the tables the import grows are analyzed
# as they double.


async def _refresh_statistics(crm: CRM, batches_done: int, tables: Sequence[str]) -> None:
    if crm.db.dialect != "postgresql" or batches_done & (batches_done - 1):  # after batch 1, 2, 4, 8, ...
        return
    async with crm.db.engine.begin() as conn:
        await conn.execute(text(f"ANALYZE {', '.join(tables)}"))
