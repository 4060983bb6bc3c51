"""`kefu kb`: import articles, search the knowledge base, evaluate it on a labelled query set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kefu.cli_support import MAX_LISTED_ERRORS, _load_settings, _run, _with_crm, fail

if TYPE_CHECKING:
    from crm_store.crm import CRM

kb_app = typer.Typer(help="The knowledge base: import, search, evaluate; its glossary.", no_args_is_help=True)
glossary_app = typer.Typer(help="The glossary: domain terms and the words customers use for them, as CSV "
                                "(language,term,synonyms; synonyms separated by |).", no_args_is_help=True)
kb_app.add_typer(glossary_app, name="glossary")
BATCH = 500


def _progress(label: str) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)


@kb_app.command("import")
def kb_import(
    path: Annotated[Path, typer.Argument(help="A .csv or .jsonl file, or a folder of Markdown files.",
                                         show_default=False)],
    draft: Annotated[bool, typer.Option("--draft", help="Import as drafts (not searchable until published).")] = False,
) -> None:
    """Create or update articles from PATH (by their id); bad rows are reported by line and skipped."""
    from knowledge_base.ingest import read_articles

    if not path.exists():
        fail(f"{path}: no such file or folder")
    with _progress("Reading") as progress:
        task = progress.add_task("read", total=None)
        try:
            parsed = read_articles(path, progress=lambda done, total: progress.update(task, completed=done,
                                                                                     total=total))
        except ValueError as exc:
            fail(str(exc))
    settings = _load_settings()

    async def store(crm: CRM) -> tuple[Any, int]:
        from crm_store.dto import ArticleInput
        from kefu.runtime import open_knowledge_base

        totals = {"created": 0, "updated": 0, "unchanged": 0}
        inputs = [ArticleInput(question=d.question, answer=d.answer, alt_questions=tuple(d.alt_questions),
                               tags=tuple(d.tags), language=d.language or "en", external_id=d.external_id,
                               status="draft" if draft else d.status) for _, d in parsed.drafts]
        with _progress("Storing") as progress:
            task = progress.add_task("store", total=len(inputs))
            for start in range(0, len(inputs), BATCH):
                report = await crm.knowledge.upsert_articles(articles=inputs[start : start + BATCH])
                for key in totals:
                    totals[key] += getattr(report, key)
                progress.update(task, completed=min(start + BATCH, len(inputs)))
        typer.echo("Encoding new and changed articles (vectors are cached per version)...", err=True)
        kb = await open_knowledge_base(crm, follow_changes=False)
        return totals, sum(len(s) for s in kb.segments.values())

    totals, searchable = _run(lambda: _with_crm(settings, store), settings)
    typer.echo(f"articles: {parsed.total} read, {totals['created']} created, {totals['updated']} updated, "
               f"{totals['unchanged']} unchanged, {len(parsed.errors)} rejected; {searchable} published in search")
    for error in parsed.errors[:MAX_LISTED_ERRORS]:
        where = f"{error.source}: " if error.source else ""
        typer.echo(f"{where}line {error.line}: {error.reason}")
    if len(parsed.errors) > MAX_LISTED_ERRORS:
        typer.echo(f"... and {len(parsed.errors) - MAX_LISTED_ERRORS} more")


@kb_app.command("search")
def kb_search(
    text: Annotated[str, typer.Argument(help="A customer's question.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    limit: Annotated[int, typer.Option(help="How many hits to show.")] = 5,
) -> None:
    """Search the published articles: ranked hits and the answer / suggest / no_answer decision."""
    if not text.strip():
        fail("give a question to search for")
    settings = _load_settings()

    async def search(crm: CRM) -> Any:
        from kefu.runtime import open_knowledge_base

        kb = await open_knowledge_base(crm, follow_changes=False)
        return kb.search(text, k=limit)

    result = _run(lambda: _with_crm(settings, search), settings)
    if as_json:
        typer.echo(json.dumps(result_json(result), ensure_ascii=False))
        return
    typer.echo(f"{result.decision} ({result.language}, {result.timings_ms.get('total', 0):.1f} ms)")
    for rank, hit in enumerate(result.hits, 1):
        typer.echo(f"{rank}. [{hit.confidence:.2f}] {hit.question}  (#{hit.article_id}"
                   f"{', ' + str(hit.external_id) if hit.external_id else ''})")
    if result.decision == "answer" and result.best is not None:
        typer.echo("")
        typer.echo(result.best.answer)


def result_json(result: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {"query": result.query, "language": result.language, "decision": result.decision,
            "hits": [asdict(h) for h in result.hits], "suggestions": [h.article_id for h in result.suggestions],
            "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()}}


@kb_app.command("evaluate")
def kb_evaluate(
    faqs: Annotated[Path, typer.Option(help="Articles: the .jsonl or .csv import formats (StackFAQ's "
                                            "`answers` list is accepted).", show_default=False)],
    queries: Annotated[Path, typer.Option(help="CSV query_id,query,faq_id.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Hit@1, Recall@5, MRR@10, NDCG@10, decision rates and latency on a labelled query set (in memory)."""
    import asyncio
    import csv

    from knowledge_base.evaluate import LabelledQuery, evaluate
    from knowledge_base.ingest import read_articles
    from knowledge_base.lang import detect_language
    from knowledge_base.service import KnowledgeBase, MemoryArticle, MemoryArticleStore
    from knowledge_base.settings import KbSettings

    for path in (faqs, queries):
        if not path.is_file():
            fail(f"{path}: no such file")
    try:
        parsed = read_articles(faqs)
        with queries.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
        labelled = [LabelledQuery(r["query_id"], r["query"], r["faq_id"]) for r in rows]
    except (ValueError, KeyError) as exc:
        fail(f"cannot read the evaluation files: {exc}")
    articles = [MemoryArticle(id=i + 1, question=d.question, answer=d.answer, alt_questions=d.alt_questions,
                              language=d.language or detect_language(d.question), external_id=d.external_id)
                for i, (_, d) in enumerate(parsed.drafts)]
    kb = KnowledgeBase(MemoryArticleStore(articles), KbSettings())
    asyncio.run(kb.refresh())
    report = evaluate(kb, labelled)
    report["articles"] = len(articles)
    report["rejected_rows"] = len(parsed.errors)
    if as_json:
        typer.echo(json.dumps(report, default=lambda x: round(x, 4)))
        return
    typer.echo(f"{len(labelled)} queries over {len(articles)} articles")
    for name in ("hybrid", "dense", "bm25"):
        m = report[name]
        typer.echo(f"  {name:<7} Hit@1 {m['hit@1']:.4f}  Recall@5 {m['recall@5']:.4f}  MRR@10 {m['mrr@10']:.4f}"
                   f"  NDCG@10 {m['ndcg@10']:.4f}")
    typer.echo(f"  answered {report['answer_rate']:.1%}, suggested {report['suggest_rate']:.1%}, "
               f"no answer {report['no_answer_rate']:.1%}; wrong confident answers {report['wrong_answer_rate']:.1%}")
    lat = report["latency_ms"]
    typer.echo(f"  latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")


@glossary_app.command("import")
def glossary_import(
    path: Annotated[Path, typer.Argument(help="A CSV file: language,term,synonyms (UTF-8).", show_default=False)],
) -> None:
    """Add or update glossary terms from PATH (by language and term); bad rows are reported by line and skipped."""
    from kefu.customer_cli import _operator

    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    settings = _load_settings()

    async def store(crm: CRM) -> Any:
        from crm_store.services.glossary import GlossaryFileError

        try:
            return await crm.glossary.import_csv(data=data, actor_label=_operator())
        except GlossaryFileError as exc:
            fail(f"{path}: {exc}")

    report = _run(lambda: _with_crm(settings, store), settings)
    typer.echo(f"glossary: {report.read} rows read, {report.created} created, {report.updated} updated, "
               f"{report.unchanged} unchanged, {len(report.errors)} rejected; knowledge base at revision "
               f"{report.revision}")
    for error in report.errors[:MAX_LISTED_ERRORS]:
        typer.echo(f"line {error.line}: {error.reason}")
    if len(report.errors) > MAX_LISTED_ERRORS:
        typer.echo(f"... and {len(report.errors) - MAX_LISTED_ERRORS} more")


@glossary_app.command("export")
def glossary_export(
    out: Annotated[Path | None, typer.Option("--out", help="The CSV file to write (default: standard output).",
                                             show_default=False)] = None,
    language: Annotated[str | None, typer.Option(help="Only this language's terms: en or zh.",
                                                 show_default=False)] = None,
) -> None:
    """Write the glossary as CSV (UTF-8 with a BOM for Excel), as `kefu kb glossary import` takes it back."""
    if language is not None and language not in ("en", "zh"):
        fail("--language is en or zh")
    settings = _load_settings()

    async def export(crm: CRM) -> tuple[bytes, int]:
        from crm_store.services.glossary import glossary_csv

        terms = await crm.glossary.list_terms(language=language)
        return glossary_csv(terms), len(terms)

    data, count = _run(lambda: _with_crm(settings, export), settings)
    if out is None:
        typer.echo(data, nl=False)
        return
    try:
        out.write_bytes(data)
    except OSError as exc:
        fail(f"{out}: {exc.strerror or exc}")
    typer.echo(f"Exported {count} glossary terms to {out}.")
