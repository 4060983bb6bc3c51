"""KEFU_NLU_BACKEND=rasa end to end: scripts/rasa-server builds Rasa 3.6, trains it on nlu/data, serves it, and
RasaBackend parses Kefu's own phrases through it.

The first run builds the Rasa venv under var/rasa (1-2 min, ~2.7 GB) and trains (~1-2 min); later runs reuse both
while nlu/data and nlu/rasa/config.yml stay the same. Skipped, with the reason, where no Python 3.10 exists.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nlu.errors import NluBackendError
from nlu.rasa_backend import RasaBackend

# Building the venv and training can outlast the suite's 600 s default; each phase has its own deadline below.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "rasa-server"
DATA = ROOT / "nlu" / "data"
HOME = ROOT / "var" / "rasa"  # shared with scripts/rasa-server's default, so the venv and model are reused

# (phase, what the script prints when the phase starts, seconds it may take)
PHASES = [
    ("building the venv", "rasa-server: building the Rasa venv", 6 * 60),
    ("training", "rasa-server: training", 5 * 60),
    ("starting the server", "rasa-server: serving", 90),
]
SET_UP_DEADLINE_S = 60  # finding Python, checking the venv, copying the data

# Phrases written for this test, not in the training data (test_phrases_are_held_out checks).
OWN_EN_PHRASES = [
    ("hello, anyone there?", "greet"),
    ("thanks a lot for the help", "thanks"),
    ("ok bye for now", "goodbye"),
    ("could you tell me how many loyalty points are left", "check_points"),
    ("what membership tier am I on", "check_tier"),
    ("show me every points transaction I had", "points_history"),
    ("which rewards could I get with my points", "rewards_catalog"),
    ("I would like to redeem my points for the jasmine sample", "redeem_reward"),
    ("please let me talk to a real human agent", "human_handoff"),
    ("my parcel came broken and I am not happy", "complaint"),
    ("please switch the language to Chinese", "change_language"),
    ("stop sending me these messages", "unsubscribe"),
    ("I want to start the Oolong Essentials course", "start_course"),
    ("take me to the next lesson please", "continue_course"),
    ("how long does shipping take to Germany", "ask_question"),
    ("who is going to win the election", "out_of_scope"),
]
OWN_ZH_PHRASES = [
    ("哈喽，你好啊", "greet"),
    ("太感谢你了", "thanks"),
    ("好的再见", "goodbye"),
    ("我现在有多少积分呢", "check_points"),
    ("我的会员等级是什么", "check_tier"),
    ("看看我的积分明细", "points_history"),
    ("积分都能换哪些奖品", "rewards_catalog"),
    ("我要用积分兑换免运费券", "redeem_reward"),
    ("帮我转接人工客服", "human_handoff"),
    ("收到的包裹破损了，我要投诉", "complaint"),
    ("请换成英文回复我", "change_language"),
    ("不要再给我发消息了", "unsubscribe"),
    ("我想开始学功夫茶艺", "start_course"),
    ("继续下一课", "continue_course"),
    ("寄到上海要几天", "ask_question"),
    ("明天北京会下雨吗", "out_of_scope"),
]


def _pairs(phrases: Any) -> list[tuple[str, str]]:
    """(text, intent) pairs from a dict {text: intent} or a sequence of pairs or of objects with text/intent."""
    if isinstance(phrases, dict):
        return [(str(text), str(intent)) for text, intent in phrases.items()]
    pairs = []
    for item in phrases:
        if isinstance(item, (tuple, list)):
            pairs.append((str(item[0]), str(item[1])))
        elif isinstance(item, dict):
            pairs.append((str(item["text"]), str(item["intent"])))
        else:
            pairs.append((str(item.text), str(item.intent)))
    return pairs


def held_out_phrases() -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    """Kefu's shared phrase lists (tests/nlu/kefu_phrases.py) when present, else this module's own."""
    try:
        from tests.nlu import kefu_phrases
    except ImportError:
        return "this module's phrases", OWN_EN_PHRASES, OWN_ZH_PHRASES
    return "tests/nlu/kefu_phrases.py", _pairs(kefu_phrases.EN_PHRASES), _pairs(kefu_phrases.ZH_PHRASES)


def training_examples() -> Iterator[tuple[str, str]]:
    """(text without entity markup, intent) of every training example under nlu/data."""
    markup = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")
    for path in sorted(DATA.rglob("*.yml")):
        for block in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("nlu") or []:
            if "intent" in block:
                for line in str(block.get("examples") or "").splitlines():
                    if line.strip().startswith("- "):
                        yield markup.sub(r"\1", line.strip()[2:]).strip(), block["intent"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RasaServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the script and everything it started (its process group)."""
        if self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


def _wait_until_serving(server: RasaServer) -> None:
    phase, deadline, current = "setting up", time.monotonic() + SET_UP_DEADLINE_S, -1
    while True:
        returncode = server.process.poll()
        if returncode == 3:  # the script's "no usable Python" status
            reason = [line for line in server.log_tail(10).splitlines() if "rasa-server: error" in line]
            pytest.skip(f"Rasa needs Python 3.10 and none was found: {' '.join(reason) or server.log_tail(3)}")
        if returncode is not None:
            pytest.fail(f"scripts/rasa-server exited with status {returncode} while {phase}:\n{server.log_tail()}")
        log = server.log.read_text(encoding="utf-8", errors="replace")
        for index in range(current + 1, len(PHASES)):  # a phase may be skipped (venv built, model up to date)
            if PHASES[index][1] in log:
                current, (phase, _, limit_s) = index, PHASES[index]
                deadline = time.monotonic() + limit_s
        if phase == "starting the server":
            try:
                status = httpx.get(f"{server.url}/status", timeout=2)
                if status.status_code == 200 and status.json().get("model_file"):
                    return
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            pytest.fail(f"scripts/rasa-server took too long {phase}:\n{server.log_tail()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def rasa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RasaServer]:
    log = tmp_path_factory.mktemp("rasa") / "rasa-server.log"
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SCRIPT), "--port", str(port), "--home", str(HOME)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown ends rasa and all it spawned
        )
    server = RasaServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
async def backend(rasa_server: RasaServer) -> Any:
    backend = RasaBackend(rasa_server.url, timeout_s=10)
    yield backend
    await backend.aclose()


def test_phrases_are_held_out() -> None:
    """The accuracy below means something only if the phrases are not training examples."""
    trained = {text.casefold() for text, _ in training_examples()}
    assert len(trained) > 100, "nlu/data holds no training examples"
    source, en, zh = held_out_phrases()
    assert [text for text, _ in en + zh if text.casefold() in trained] == [], source


async def test_parse_answers_in_rasas_shape(rasa_server: RasaServer, backend: RasaBackend) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        raw = await client.post(f"{rasa_server.url}/model/parse", json={"text": "how many points do I have?"})
    assert raw.status_code == 200
    data = raw.json()
    assert {"text", "intent", "entities", "intent_ranking"} <= data.keys()
    assert data["text"] == "how many points do I have?"
    assert set(data["intent"]) >= {"name", "confidence"}
    assert isinstance(data["entities"], list)
    assert [set(r) >= {"name", "confidence"} for r in data["intent_ranking"]] == [True] * len(data["intent_ranking"])

    result = await backend.parse("how many points do I have?")
    assert (result.backend, result.language, result.text) == ("rasa", "en", "how many points do I have?")
    assert result.intent.name == "check_points"
    assert 0.3 <= result.intent.confidence <= 1.0
    confidences = [score.confidence for score in result.intent_ranking]
    assert confidences == sorted(confidences, reverse=True)
    assert result.intent_ranking[0].name == "check_points"
    assert result.text_tokens, "Rasa reports the token offsets"
    assert (await backend.parse("我的积分还有多少")).language == "zh"


def _accuracy(results: Iterable[tuple[str, str, str]]) -> tuple[float, list[str]]:
    results = list(results)
    wrong = [f"{text!r}: {got} (expected {expected})" for text, expected, got in results if got != expected]
    return 1 - len(wrong) / len(results), wrong


@pytest.mark.parametrize("language", ["en", "zh"])
async def test_held_out_phrases_get_the_right_intent(backend: RasaBackend, language: str) -> None:
    source, en, zh = held_out_phrases()
    phrases = en if language == "en" else zh
    assert len(phrases) >= 10, source
    results = [(text, expected, (await backend.parse(text)).intent.name) for text, expected in phrases]
    accuracy, wrong = _accuracy(results)
    print(f"{language}: {accuracy:.0%} of {len(results)} phrases from {source}; wrong: {wrong}")
    assert accuracy >= 0.8, wrong


@pytest.mark.parametrize(
    "text", ["where is my order KT-1028?", "my order KT-1028 is late", "我的订单KT-1028还没到", "订单 KT-1028 到哪了"]
)
async def test_an_order_number_is_an_order_id_entity(backend: RasaBackend, text: str) -> None:
    result = await backend.parse(text)
    assert result.entity_values("order_id") == ["KT-1028"]  # one entity, though DIET and the regex both find it
    (order_id,) = [e for e in result.entities if e.entity == "order_id"]
    assert text[order_id.start : order_id.end] == "KT-1028" == order_id.text


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("I want to redeem the free shipping voucher", "reward", "Free shipping voucher"),
        ("我想兑换免运费券", "reward", "Free shipping voucher"),  # a lookup entry inside a Chinese sentence
        ("can we talk in 中文", "language", "zh"),
    ],
)
async def test_lookup_entities_come_back_as_canonical_values(
    backend: RasaBackend, text: str, entity: str, value: str
) -> None:
    assert value in (await backend.parse(text)).entity_values(entity)


def test_parse_sync_agrees_with_parse(rasa_server: RasaServer) -> None:
    backend = RasaBackend(rasa_server.url, timeout_s=10)
    try:
        result = backend.parse_sync("帮我转接人工客服")
    finally:
        backend.close()
    assert (result.intent.name, result.language, result.backend) == ("human_handoff", "zh", "rasa")


async def test_a_stopped_server_is_a_backend_error(rasa_server: RasaServer, backend: RasaBackend) -> None:
    """Last in this module: it stops the shared server."""
    assert (await backend.parse("hello")).intent.name == "greet"
    rasa_server.stop()
    assert rasa_server.process.poll() is not None
    with pytest.raises(NluBackendError, match=rf"^Rasa server at {rasa_server.url}/model/parse is unreachable"):
        await backend.parse("hello")
    with pytest.raises(NluBackendError, match="is unreachable"):
        backend.parse_sync("hello")
