"""The sample shop's FAQ as customers ask it: a hand-written dev set (bench/data/demo_shop_dev.csv, see its README)
sent through the web chat of a freshly started `kefu demo`, each question from a new visitor.

    .venv/bin/python bench/kb_demo_shop.py [--language zh|en] [--data CSV] [--url URL] [--nlu-model-dir DIR]

By default `kefu demo` (the venv's) runs in a temporary folder with its own SQLite file and NLU model (trained at
start: minutes; `--nlu-model-dir var/bench-nlu-model` keeps it for later runs, retrained when the training data
changes, not when the NLU's code does), the web chat's per-address limit raised, and is stopped at the end; the
caller's KEFU_KB_* and KEFU_NLU_* settings reach it, no other KEFU_ setting does. `--url` asks a running server
instead. Each question is posted as a visitor never seen before (nothing carries over), with the browser language
the widget would send (zh-CN or en-US).

Outcome of a question whose article should answer it (`expected` = shop-<lang>-<topic>):
  right            an answer naming that article; for the topics the bot serves with a flow, the flow instead:
                   points-balance -> intent check_points or check_tier, human -> a handoff, privacy -> intent
                   privacy_request or the /privacy flow's reply (bot/privacy.py: intent "privacy", pv: buttons)
  article_not_flow a flow topic answered with its own article rather than served by its flow
  wrong            an answer naming another article
  other_flow       a flow, handoff or canned reply (small talk, help) instead of the article
  suggested        "did you mean" buttons (suggested_with_right: the expected article among them)
  no_answer        the bot said it has no answer
Out-of-scope questions (`expected` = none): oos_answered (an article given as the answer), oos_suggested, oos_other
(no answer, a flow, a handoff). Rates are over the in-scope and the out-of-scope questions of each language; latency
is the client's round trip per question. `misses` lists every question not right (and every out-of-scope one
answered or suggested) with what came back. `near_copies` guards the set's rule that it does not copy the KB's
phrasings: each question's highest character-bigram Jaccard (lower-cased, letters and digits only) to any question
or alternative of kefu.sample_kb.SAMPLE_ARTICLES; those at >= 0.6 are listed.

Prints one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # kefu.sample_kb when run from elsewhere
DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "demo_shop_dev.csv"
LANGUAGES = ("zh", "en")
BROWSER_LANGUAGE = {"zh": "zh-CN", "en": "en-US"}
FLOW_TOPICS = ("points-balance", "human", "privacy")
POINTS_INTENTS = {"check_points", "check_tier"}
PRIVACY_INTENTS = {"privacy_request", "privacy"}
IN_SCOPE = ("right", "article_not_flow", "wrong", "other_flow", "suggested", "no_answer", "error")
OUT_OF_SCOPE = ("oos_answered", "oos_suggested", "oos_other", "error")
NEAR_COPY = 0.6
PASSED_SETTINGS = ("KEFU_KB_", "KEFU_NLU_")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Question:
    qid: str
    language: str
    text: str
    expected: str  # an article's external id, or "none"

    @property
    def topic(self) -> str | None:
        return None if self.expected == "none" else self.expected.split("-", 2)[2]


def read_questions(path: Path, language: str | None) -> list[Question]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = [Question(r["qid"], r["language"], r["question"], r["expected"]) for r in csv.DictReader(f)]
    return [q for q in rows if language is None or q.language == language]


# --- the demo ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_env(workdir: Path, nlu_model_dir: Path) -> dict[str, str]:
    """The caller's environment without its KEFU_ settings (but the KB's and NLU's), plus the demo's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_") or k.startswith(PASSED_SETTINGS)}
    env.update({
        "HF_HUB_OFFLINE": "1",
        "KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'kefu.db'}",
        "KEFU_NLU_MODEL_DIR": str(nlu_model_dir),
        # Every question comes from this one address: the per-address flood limit would refuse most of them.
        "KEFU_BOT_WEBCHAT_ADDRESS_MESSAGES": "1000000",
    })
    return env


def kefu_command() -> list[str]:
    kefu = Path(sys.executable).parent / "kefu"
    return [str(kefu)] if kefu.exists() else [sys.executable, "-m", "kefu.cli"]


@contextlib.contextmanager
def running_demo(workdir: Path, nlu_model_dir: Path, timeout_s: float) -> Iterator[tuple[str, float]]:
    """`kefu demo` on a free port in `workdir`, until its web chat answers; its URL and the seconds that took.
    Stopped (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    log_path = workdir / "demo.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen([*kefu_command(), "demo", "--port", str(port)], cwd=workdir,
                                   env=demo_env(workdir, nlu_model_dir), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        say(f"kefu demo (pid {process.pid}) starting on port {port}; its log: {log_path}")
        wait_ready(url, process, log_path, time.monotonic() + timeout_s)
        ready_s = time.monotonic() - started
        say(f"the web chat answers after {ready_s:.0f} s")
        yield url, ready_s
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, deadline: float) -> None:
    """Until the web chat answers a message (the NLU model is trained before the server listens)."""
    with httpx.Client(base_url=url, timeout=120) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"kefu demo exited ({process.returncode}):\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if client.post("/webchat/api/messages", json=message("hello")).status_code == 200:
                    return
            time.sleep(1)
    raise RuntimeError(f"kefu demo's web chat did not answer in time; its log: {log_path}")


# --- asking -----------------------------------------------------------------------------------------------------


def message(text: str | None = None, *, payload: str | None = None, language: str | None = None) -> dict[str, Any]:
    """A post from a visitor never seen before."""
    body: dict[str, Any] = {"visitor_id": f"bench-{uuid.uuid4().hex}", "text": text or ""}
    if payload is not None:
        body["payload"] = payload
    if language is not None:
        body["language"] = language
    return body


class Asker:
    def __init__(self, client: httpx.Client, *, browser_language: bool) -> None:
        self.client = client
        self.browser_language = browser_language
        self.article_ids: dict[int, str | None] = {}  # article id -> external id (suggestions carry only the id)
        self.waited_429 = 0

    def post(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        for _ in range(20):
            response = self.client.post("/webchat/api/messages", json=body)
            if response.status_code == 429:  # a running server's own limits (--url)
                self.waited_429 += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            response.raise_for_status()
            replies: list[dict[str, Any]] = response.json()["replies"]
            for reply in replies:
                if reply.get("article_id") is not None:
                    self.article_ids[reply["article_id"]] = reply.get("article_external_id")
            return replies
        raise RuntimeError("still refused (429) after 20 tries")

    def ask(self, question: Question) -> tuple[list[dict[str, Any]], float]:
        language = BROWSER_LANGUAGE.get(question.language) if self.browser_language else None
        started = time.perf_counter()
        replies = self.post(message(question.text, language=language))
        return replies, (time.perf_counter() - started) * 1000

    def suggested(self, replies: list[dict[str, Any]]) -> list[str | None]:
        """The external ids of the suggested articles; an id not seen in an answer yet is learnt by pressing its
        button as another new visitor (not timed)."""
        out = []
        for reply in replies:
            if reply.get("decision") != "suggest":
                continue
            for button in reply.get("buttons", []):
                kind, _, raw = str(button.get("payload", "")).partition(":")
                if kind != "kb" or not raw.isdigit():
                    continue
                article = int(raw)
                if article not in self.article_ids:
                    self.post(message(payload=button["payload"]))
                    self.article_ids.setdefault(article, None)
                out.append(self.article_ids[article])
        return out


# --- judging ----------------------------------------------------------------------------------------------------


def served_by_flow(topic: str, replies: list[dict[str, Any]]) -> bool:
    if topic == "points-balance":
        return any(r.get("intent") in POINTS_INTENTS for r in replies)
    if topic == "human":
        return any(r.get("decision") == "handoff" for r in replies)
    return any(r.get("intent") in PRIVACY_INTENTS or any(str(b.get("payload", "")).startswith("pv:")
                                                          for b in r.get("buttons", [])) for r in replies)


def outcome(question: Question, replies: list[dict[str, Any]]) -> str:
    decisions = [r.get("decision") for r in replies]
    answered = [r.get("article_external_id") for r in replies if r.get("decision") == "answer"]
    if question.topic is None:
        if answered:
            return "oos_answered"
        return "oos_suggested" if "suggest" in decisions else "oos_other"
    if question.topic in FLOW_TOPICS and served_by_flow(question.topic, replies):
        return "right"
    if answered:
        if answered[0] != question.expected:
            return "wrong"
        return "article_not_flow" if question.topic in FLOW_TOPICS else "right"
    if "suggest" in decisions:
        return "suggested"
    if decisions and all(d == "no_answer" for d in decisions):
        return "no_answer"
    return "other_flow"


def seen(replies: list[dict[str, Any]], suggestions: list[str | None]) -> dict[str, Any]:
    """What came back, briefly."""
    first = replies[0] if replies else {}
    got: dict[str, Any] = {"decision": first.get("decision"), "intent": first.get("intent"),
                           "confidence": first.get("confidence")}
    if first.get("article_external_id"):
        got["article"] = first["article_external_id"]
    if suggestions:
        got["suggestions"] = suggestions
    if first.get("decision") not in ("answer", "suggest"):
        got["text"] = str(first.get("text", ""))[:120]
    if len(replies) > 1:
        got["more_replies"] = [(r.get("decision"), r.get("intent")) for r in replies[1:]]
    return got


def nearest_rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


def rate(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One language's counts, rates and latency."""
    in_scope = [r for r in results if r["expected"] != "none"]
    oos = [r for r in results if r["expected"] == "none"]
    counts = Counter(r["outcome"] for r in in_scope)
    oos_counts = Counter(r["outcome"] for r in oos)
    with_right = sum(1 for r in in_scope
                     if r["outcome"] == "suggested" and r["expected"] in r["got"].get("suggestions", []))
    by_topic: dict[str, list[int]] = {}
    for r in in_scope:
        right_total = by_topic.setdefault(r["expected"].split("-", 2)[2], [0, 0])
        right_total[0] += r["outcome"] == "right"
        right_total[1] += 1
    flows = Counter(r["got"]["intent"] or r["got"]["decision"] for r in in_scope if r["outcome"] == "other_flow")
    latencies = [r["ms"] for r in results if r["ms"] is not None]
    return {
        "questions": len(results), "in_scope": len(in_scope), "out_of_scope": len(oos),
        **{name: counts[name] for name in IN_SCOPE if name != "error" or counts[name]},
        "suggested_with_right": with_right,
        **{f"{name}_rate": rate(counts[name], len(in_scope)) for name in IN_SCOPE if name != "error"},
        "suggested_with_right_rate": rate(with_right, len(in_scope)),
        **{name: oos_counts[name] for name in OUT_OF_SCOPE if name != "error" or oos_counts[name]},
        **{f"{name}_rate": rate(oos_counts[name], len(oos)) for name in OUT_OF_SCOPE if name != "error"},
        "other_flow_by_intent": dict(flows.most_common()),
        "right_by_topic": {topic: f"{right}/{total}" for topic, (right, total) in sorted(by_topic.items())},
        "latency_ms": {"p50": nearest_rank(latencies, 0.50), "p95": nearest_rank(latencies, 0.95)},
    }


# --- near copies ------------------------------------------------------------------------------------------------


def bigrams(text: str) -> set[str]:
    kept = "".join(c for c in text.lower() if c.isalnum())
    return {kept[i:i + 2] for i in range(len(kept) - 1)} or ({kept} if kept else set())


def near_copies(questions: list[Question]) -> dict[str, Any]:
    """Each question's highest bigram Jaccard to any phrasing of the live sample KB; those at NEAR_COPY or more."""
    from kefu.sample_kb import SAMPLE_ARTICLES

    phrasings = [(a.external_id, p, bigrams(p)) for a in SAMPLE_ARTICLES for p in (a.question, *a.alt_questions)]
    found = []
    highest = 0.0
    for question in questions:
        mine = bigrams(question.text)
        score, article, phrasing = max(
            ((len(mine & theirs) / len(mine | theirs) if mine | theirs else 0.0), article, phrasing)
            for article, phrasing, theirs in phrasings
        )
        highest = max(highest, score)
        if score >= NEAR_COPY:
            found.append({"qid": question.qid, "question": question.text, "similarity": round(score, 3),
                          "phrasing": phrasing, "article": article})
    return {"threshold": NEAR_COPY, "count": len(found), "highest": round(highest, 3),
            "questions": sorted(found, key=lambda f: -f["similarity"])}


# --- the run ----------------------------------------------------------------------------------------------------


def ask_all(url: str, questions: list[Question], *, browser_language: bool) -> tuple[list[dict[str, Any]], int]:
    results = []
    with httpx.Client(base_url=url, timeout=120) as client:
        asker = Asker(client, browser_language=browser_language)
        for language in LANGUAGES:  # warm-up, not measured
            asker.post(message("你好" if language == "zh" else "hello", language=BROWSER_LANGUAGE[language]))
        for i, question in enumerate(questions, 1):
            try:
                replies, ms = asker.ask(question)
                suggestions = asker.suggested(replies)
                result = {"outcome": outcome(question, replies), "ms": ms,
                          "got": seen(replies, suggestions)}
            except (httpx.HTTPError, KeyError, ValueError, RuntimeError) as exc:
                result = {"outcome": "error", "ms": None, "got": {"error": repr(exc)[:200]}}
            results.append({"qid": question.qid, "language": question.language, "question": question.text,
                            "expected": question.expected, **result})
            if i % 25 == 0 or i == len(questions):
                say(f"{i}/{len(questions)} asked")
    return results, asker.waited_429


def is_miss(result: dict[str, Any]) -> bool:
    return result["outcome"] not in ("right", "oos_other")


def bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    questions = read_questions(args.data, args.language)
    if not questions:
        raise SystemExit(f"no questions in {args.data}" + (f" in {args.language}" if args.language else ""))
    say(f"{len(questions)} questions from {args.data}")
    started = time.monotonic()
    results, waited = ask_all(url, questions, browser_language=not args.no_browser_language)
    report: dict[str, Any] = {
        "data": str(args.data),
        "server": args.url or "a fresh kefu demo",
        "settings_passed": sorted(k for k in os.environ if k.startswith(PASSED_SETTINGS)) if not args.url else None,
        "asked_s": round(time.monotonic() - started, 1),
        "waited_for_429": waited,
    }
    for language in LANGUAGES:
        mine = [r for r in results if r["language"] == language]
        if mine:
            report[language] = summary(mine)
    report["near_copies"] = near_copies(questions)
    report["misses"] = [{k: r[k] for k in ("qid", "language", "question", "expected", "outcome", "got")}
                        for r in results if is_miss(r)]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV: qid,language,question,expected")
    parser.add_argument("--language", choices=LANGUAGES, default=None, help="only this language's questions")
    parser.add_argument("--url", default=None, help="a running Kefu's base URL instead of a fresh demo")
    parser.add_argument("--nlu-model-dir", type=Path, default=None,
                        help="the demo's NLU model folder, kept between runs (default: trained in the temp folder)")
    parser.add_argument("--start-timeout", type=float, default=1800, help="seconds to wait for the demo")
    parser.add_argument("--no-browser-language", action="store_true",
                        help="post without the widget's browser language (the bot detects it from the text)")
    parser.add_argument("--keep", action="store_true", help="keep the demo's temp folder (database, log)")
    args = parser.parse_args()
    if args.url:
        report = bench(args, args.url.rstrip("/"))
    else:
        workdir = Path(tempfile.mkdtemp(prefix="kefu-kb-demo-"))
        try:
            nlu_dir = args.nlu_model_dir.resolve() if args.nlu_model_dir else workdir / "nlu-model"
            with running_demo(workdir, nlu_dir, args.start_timeout) as (url, ready_s):
                report = bench(args, url)
            report["demo_ready_s"] = round(ready_s, 1)
        except BaseException:
            say(f"failed; the demo's folder is kept: {workdir}")
            raise
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
