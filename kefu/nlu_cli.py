"""`kefu nlu`: train the intent model, parse a message (Rasa's /model/parse JSON), evaluate like `rasa test nlu`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kefu.cli_support import fail

if TYPE_CHECKING:
    from nlu.pipeline import NluModel
    from nlu.training_data import TrainingData

nlu_app = typer.Typer(help="The NLU: train, parse, evaluate.", no_args_is_help=True)

DataOption = Annotated[
    list[Path] | None,
    typer.Option("--data", help="Rasa YAML files, CSV (text + intent or category) or folders; repeatable. "
                                "Default: Kefu's own nlu/data.", show_default=False),
]
ModelOption = Annotated[
    Path | None, typer.Option("--model", help="Model folder. Default: KEFU_NLU_MODEL_DIR or ./var/nlu-model.",
                              show_default=False),
]


def default_model_dir() -> Path:
    from nlu.service import model_dir
    from nlu.settings import NluSettings

    return model_dir(NluSettings())


def _say(text: str) -> None:
    typer.echo(text, err=True)


def _data(paths: list[Path] | None) -> TrainingData:
    from nlu.pipeline import DEFAULT_DATA
    from nlu.training_data import TrainingDataError, load_training_data

    paths = paths or [DEFAULT_DATA]
    for path in paths:
        if not path.exists():
            fail(f"{path}: no such file or folder")
    try:
        data = load_training_data(*paths)
    except TrainingDataError as exc:
        fail(str(exc))
    if not data.examples:
        fail(f"no training examples in {', '.join(map(str, paths))}")
    return data


def _encoders() -> Any:
    from knowledge_base.service import Encoders
    from knowledge_base.settings import KbSettings

    return Encoders(KbSettings())


def _config(path: Path | None) -> dict[str, Any]:
    from nlu.errors import NluError
    from nlu.pipeline import load_config

    try:
        return load_config(path)
    except NluError as exc:
        fail(str(exc))


def _load_model(path: Path | None) -> NluModel:
    from nlu.errors import NluError
    from nlu.pipeline import NluModel

    try:
        return NluModel.load(path or default_model_dir(), encoders=_encoders())
    except NluError as exc:
        fail(str(exc))


@nlu_app.command("train")
def nlu_train(
    data: DataOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the model. Default: KEFU_NLU_MODEL_DIR "
                                             "or ./var/nlu-model.", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Pipeline config (default: nlu/config.yml).",
                                                show_default=False)] = None,
) -> None:
    """Train one pipeline per language found in the data, on the knowledge base's sentence encoders."""
    from nlu.errors import NluError
    from nlu.pipeline import NluModel

    training = _data(data)
    pipeline = _config(config)
    started = time.perf_counter()
    try:
        model = NluModel.train(training, encoders=_encoders(), config=pipeline, progress=_say)
    except NluError as exc:
        fail(str(exc))
    target = model.persist(out or default_model_dir())
    for language, described in model.metadata["languages"].items():
        typer.echo(f"{language}: {described['examples']} examples, {len(described['intents'])} intents, "
                   f"encoder {described['encoder']}, {described['train_s']:.1f} s")
    typer.echo(f"model written to {target} in {time.perf_counter() - started:.1f} s")


@nlu_app.command("parse")
def nlu_parse(
    text: Annotated[str, typer.Argument(help="A customer's message.", show_default=False)],
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print Rasa's /model/parse JSON.")] = False,
) -> None:
    """Intent, ranking, entities and language of TEXT (KEFU_NLU_BACKEND=rasa asks the Rasa server instead)."""
    from nlu.errors import NluError
    from nlu.settings import NluSettings

    if not text.strip():
        fail("give a message to parse")
    settings = NluSettings()
    if settings.backend == "rasa" and model is None:
        from nlu.rasa_backend import RasaBackend

        try:
            result = RasaBackend(settings.rasa_url, timeout_s=settings.rasa_timeout_s).parse_sync(text)
        except NluError as exc:
            fail(str(exc))
    else:
        result = _load_model(model).parse(text)
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return
    typer.echo(f"{result.intent.name} ({result.intent.confidence:.2f}, {result.language}, {result.backend})")
    for score in result.intent_ranking[:5]:
        typer.echo(f"  {score.confidence:.3f}  {score.name}")
    for entity in result.entities:
        typer.echo(f"  entity {entity.entity} = {entity.value!r}  [{entity.start}:{entity.end}] ({entity.extractor})")


@nlu_app.command("evaluate")
def nlu_evaluate(
    data: DataOption = None,
    model: ModelOption = None,
    cross_validation: Annotated[int | None, typer.Option("--cross-validation", min=2, help="Train and test K times "
                                                         "on K stratified folds of the data instead of testing a "
                                                         "trained model.", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Pipeline config for cross-validation.",
                                                show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    predictions: Annotated[Path | None, typer.Option("--predictions", help="Write every example's text, gold "
                                                     "intent, predicted intent and confidence as CSV.",
                                                     show_default=False)] = None,
) -> None:
    """Accuracy, macro-F1, per-intent precision/recall/F1 and the most confused pairs, like `rasa test nlu`."""
    from nlu.evaluate import cross_validate, evaluate

    training = _data(data)
    if cross_validation:
        report = cross_validate(training, cross_validation, encoders=_encoders(), config=_config(config),
                                progress=_say)
    else:
        report = evaluate(_load_model(model), training)
    if predictions:
        report.write_predictions(predictions)
    out = report.to_json()
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    how = f"{cross_validation}-fold cross-validation" if cross_validation else "trained model"
    typer.echo(f"{out['examples']} examples ({how}): accuracy {out['accuracy']:.4f}, macro-F1 {out['macro_f1']:.4f}, "
               f"fallback {out['fallback_rate']:.2%} (best intent before the fallback: "
               f"{out['top_intent_accuracy']:.4f})")
    for language, part in out["by_language"].items():
        typer.echo(f"  {language}: {part['examples']} examples, accuracy {part['accuracy']:.4f}, "
                   f"macro-F1 {part['macro_f1']:.4f}, before the fallback {part['top_intent_accuracy']:.4f}")
    typer.echo(f"{'intent':<24} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for intent, row in out["per_intent"].items():
        typer.echo(f"{intent:<24} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
                   f"{row['support']:>8}")
    if out["confused"]:
        typer.echo("most confused (gold -> predicted):")
        for pair in out["confused"]:
            typer.echo(f"  {pair['count']:>4}  {pair['gold']} -> {pair['predicted']}")
    if predictions:
        typer.echo(f"predictions written to {predictions}")
