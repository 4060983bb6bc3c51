"""`kefu kb glossary import|export`, run through the real CLI (in this process) against fresh databases (SQLite, or
PostgreSQL when KEFU_TEST_DATABASE_URL is set): bad rows by line, the round trip, one-line errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from crm_store.enums import AuditAction
from kefu.cli import app
from tests.kefu.test_backup import assert_one_line_error, on_crm

GLOSSARY = ("language,term,synonyms\r\n"
            "zh,花呗,蚂蚁花呗|花唄\r\n"
            "en,package,parcel|box\r\n"
            "en,parcel,\r\n"  # line 4: package's synonym already
            "xx,thing,\r\n"  # line 5: unknown language
            "zh,积分,分数|点数\r\n")


def kefu(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"KEFU_DATABASE_URL": url}, catch_exceptions=False)


def glossary_of(url: str) -> list[tuple[str, str, tuple[str, ...]]]:
    async def read(crm):  # type: ignore[no-untyped-def]
        return [(t.language, t.term, t.synonyms) for t in await crm.glossary.list_terms()]

    return on_crm(url, read)  # type: ignore[no-any-return]


def test_import_reports_bad_rows_by_line_loads_the_rest_and_says_so_again_unchanged(
    fresh_database_url, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    url = fresh_database_url()
    source = tmp_path / "glossary.csv"
    source.write_bytes(("\ufeff" + GLOSSARY).encode("utf-8"))  # as Excel saves "CSV UTF-8"

    result = kefu(url, "kb", "glossary", "import", str(source))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ("glossary: 5 rows read, 3 created, 0 updated, 0 unchanged, 2 rejected; "
                        "knowledge base at revision 1")
    assert lines[1].startswith("line 4: “parcel” is already a synonym of “package”")
    assert lines[2].startswith("line 5: Unknown language 'xx'")
    assert glossary_of(url) == [("en", "package", ("parcel", "box")), ("zh", "积分", ("分数", "点数")),
                                ("zh", "花呗", ("蚂蚁花呗", "花唄"))]

    async def audited(crm):  # type: ignore[no-untyped-def]
        return (await crm.audit.search(action=AuditAction.GLOSSARY_IMPORTED)).entries

    [entry] = on_crm(url, audited)
    assert entry.actor == "system" and entry.actor_label.startswith("kefu CLI (")

    again = kefu(url, "kb", "glossary", "import", str(source))
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("glossary: 5 rows read, 0 created, 0 updated, 3 unchanged, 2 rejected; "
                                   "knowledge base at revision 1")


def test_export_then_import_elsewhere_is_the_same_glossary(fresh_database_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, other = fresh_database_url(), fresh_database_url()
    source = tmp_path / "glossary.csv"
    source.write_text(GLOSSARY, encoding="utf-8")
    assert kefu(url, "kb", "glossary", "import", str(source)).exit_code == 0

    out = tmp_path / "export.csv"
    exported = kefu(url, "kb", "glossary", "export", "--out", str(out))

    assert exported.exit_code == 0, exported.output
    assert exported.stdout.strip() == f"Exported 3 glossary terms to {out}."
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the Chinese right
    assert data.decode("utf-8-sig").splitlines() == [
        "language,term,synonyms", "en,package,parcel|box", "zh,积分,分数|点数", "zh,花呗,蚂蚁花呗|花唄"]
    on_stdout = kefu(url, "kb", "glossary", "export", "--language", "zh")
    assert on_stdout.exit_code == 0 and on_stdout.stdout_bytes.decode("utf-8-sig").splitlines() == [
        "language,term,synonyms", "zh,积分,分数|点数", "zh,花呗,蚂蚁花呗|花唄"]

    loaded = kefu(other, "kb", "glossary", "import", str(out))
    assert loaded.exit_code == 0, loaded.output
    assert "3 created, 0 updated, 0 unchanged, 0 rejected" in loaded.stdout
    assert glossary_of(other) == glossary_of(url)


def test_files_that_cannot_be_read_are_one_line_errors(fresh_database_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database_url()
    assert_one_line_error(kefu(url, "kb", "glossary", "import", str(tmp_path / "missing.csv")), "missing.csv")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("language,term,synonyms\nen,café,\n".encode("latin-1"))
    assert_one_line_error(kefu(url, "kb", "glossary", "import", str(latin1)), "latin1.csv", "line 2", "UTF-8")
    headless = tmp_path / "headless.csv"
    headless.write_text("en,package,parcel\n", encoding="utf-8")
    assert_one_line_error(kefu(url, "kb", "glossary", "import", str(headless)), "headless.csv", "term")
    assert_one_line_error(kefu(url, "kb", "glossary", "export", "--language", "fr"), "--language")
    assert glossary_of(url) == []
