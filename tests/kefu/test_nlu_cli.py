"""`kefu nlu train | parse | evaluate`, run for real in a subprocess on small English + Chinese data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.kefu.test_cli import assert_one_line_error, kefu

DATA = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello
    - hi there
    - good morning
    - hey
    - 你好
    - 您好呀
    - 早上好
    - 嗨，在吗
- intent: check_points
  examples: |
    - how many points do I have
    - what's my points balance
    - show me my points
    - points left on my account
    - 我有多少积分
    - 查一下我的积分
    - 我的积分余额是多少
    - 积分还剩多少
- intent: complaint
  examples: |
    - my order [KT-1028](order_id) arrived broken
    - you charged me twice
    - the parcel is very late
    - the tea tasted stale
    - 订单[KT-2001](order_id)的东西坏了
    - 快递太慢了
    - 我要投诉
    - 你们多扣了我的钱
- synonym: zh
  examples: |
    - 中文
- regex: order_id
  examples: |
    - [A-Z]{2,3}-\\d{3,8}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data file, model folder) after `kefu nlu train`."""
    work = tmp_path_factory.mktemp("nlu-cli")
    data = work / "nlu.yml"
    data.write_text(DATA, encoding="utf-8")
    # Training loads torch and two encoders: minutes, not seconds, on a busy 2-core machine.
    result = kefu("nlu", "train", "--data", str(data), "--out", str(work / "model"), cwd=work, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "en: 12 examples, 3 intents" in result.stdout and "zh: 12 examples, 3 intents" in result.stdout
    assert "training MLPIntentClassifier" in result.stderr  # progress on stderr
    return data, work / "model"


def test_parse_json_is_rasas_shape_with_the_language(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, model = trained
    result = kefu("nlu", "parse", "my parcel KT-3003 is broken", "--model", str(model), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["intent"]["name"] == "complaint" and 0 < out["intent"]["confidence"] <= 1
    assert out["language"] == "en"
    assert [(e["entity"], e["value"], e["start"], e["end"]) for e in out["entities"]] == [
        ("order_id", "KT-3003", 10, 17)]
    assert {r["name"] for r in out["intent_ranking"]} == {"greet", "check_points", "complaint"}

    chinese = json.loads(kefu("nlu", "parse", "帮我查查积分", "--model", str(model), "--json", cwd=tmp_path).stdout)
    assert (chinese["intent"]["name"], chinese["language"]) == ("check_points", "zh")


def test_parse_without_a_model_says_how_to_get_one(tmp_path: Path) -> None:
    result = kefu("nlu", "parse", "hello", "--model", str(tmp_path / "none"), cwd=tmp_path)
    assert_one_line_error(result, "no NLU model here", "kefu nlu train")


def test_evaluate_a_model_and_write_predictions(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, model = trained
    predictions = tmp_path / "predictions.csv"
    result = kefu("nlu", "evaluate", "--data", str(data), "--model", str(model), "--predictions", str(predictions),
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "24 examples (trained model): accuracy" in result.stdout
    assert "complaint" in result.stdout and "precision" in result.stdout
    with predictions.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and set(rows[0]) == {"text", "intent", "predicted", "confidence", "language"}
    assert {r["language"] for r in rows} == {"en", "zh"}


def test_cross_validation_on_a_csv_with_category(tmp_path: Path) -> None:
    """Public benchmarks come as CSV with `text` and `category` (Banking77)."""
    rows = [("hello", "greet"), ("hi there", "greet"), ("good morning", "greet"), ("hey you", "greet"),
            ("my card was stolen", "lost_card"), ("I lost my card", "lost_card"), ("can't find my card", "lost_card"),
            ("card missing", "lost_card"), ("what's the exchange rate", "rate"), ("euro to dollar rate", "rate"),
            ("how much is a pound in yen", "rate"), ("current exchange rates", "rate")]
    data = tmp_path / "train.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    result = kefu("nlu", "evaluate", "--data", str(data), "--cross-validation", "2", "--json", cwd=tmp_path,
                  timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["examples"] == 12 and out["cross_validation_folds"] == 2
    assert set(out["per_intent"]) == {"greet", "lost_card", "rate"}
    assert 0 <= out["accuracy"] <= out["top_intent_accuracy"] <= 1
    for pair in out["confused"]:
        assert set(pair) == {"gold", "predicted", "count"} and pair["gold"] != pair["predicted"]


def test_malformed_training_data_is_reported_with_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "broken.yml"
    data.write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hello\n    - [hi(entity\n',
                    encoding="utf-8")
    result = kefu("nlu", "train", "--data", str(data), "--out", str(tmp_path / "model"), cwd=tmp_path)
    assert_one_line_error(result, f"{data}:6")
    assert not (tmp_path / "model").exists()
