"""An option that sets a TrainConfig or GateConfig field is declared once, in the field: the
commands that take it show the field's default and description, and the choices they list come
from the registries (MODEL_TYPES, SERVING_FORMS, CALIBRATIONS), never typed in a help."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel

from sentiops.cli import options
from sentiops.cli.main import app
from sentiops.cli.model import TRAIN_REQUIRED
from sentiops.models import MODEL_TYPES
from sentiops.params import CALIBRATIONS, SERVING_FORMS, GateConfig, TrainConfig

CLI = Path(__file__).resolve().parents[2] / "sentiops" / "cli"


def params_of(*words: str) -> dict[str, Any]:
    """The click parameters of `sentiops WORDS`, by name."""
    command: Any = typer.main.get_command(app)
    ctx = typer.Context(command)
    for word in words:
        command = command.get_command(ctx, word)
        ctx = typer.Context(command, parent=ctx)
    return {p.name: p for p in command.params}


def default_of(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields[name]
    return None if field.default_factory is not None else field.default


def test_train_has_an_option_for_every_train_config_field() -> None:
    params = params_of("train")
    fields = [n for n in TrainConfig.model_fields if n not in options.NOT_OPTIONS]
    assert set(fields) <= set(params)
    for name in fields:
        field, param = TrainConfig.model_fields[name], params[name]
        assert field.description and field.description in param.help, name
        if name in TRAIN_REQUIRED:
            assert param.required, name
        else:
            assert param.default == default_of(TrainConfig, name), name
    assert params["c"].opts == ["--c"] and params["model_type"].opts == ["--model-type"]


@pytest.mark.parametrize("command", [("gate",), ("pipeline", "run"), ("pipeline", "submit")])
def test_gate_thresholds_are_the_gate_config_fields(command: tuple[str, ...]) -> None:
    params = params_of(*command)
    assert set(options.GATE_FIELDS) == set(GateConfig.model_fields) - {"seed"}
    for name in options.GATE_FIELDS:
        field, param = GateConfig.model_fields[name], params[name]
        assert param.default == field.default and field.description == param.help, name


@pytest.mark.parametrize("command", [("pipeline", "run"), ("pipeline", "submit")])
def test_pipeline_options_leave_the_rest_to_the_pipeline(command: tuple[str, ...]) -> None:
    params = params_of(*command)
    for name in ("data", "model_type", "base_model"):
        assert params[name].default is None  # the pipeline's default
        assert TrainConfig.model_fields[name].description in params[name].help


def test_choices_come_from_the_registries() -> None:
    model_type = params_of("train")["model_type"].help
    assert all(name in model_type for name in MODEL_TYPES)
    assert all(
        form in TrainConfig.model_fields["serving_form"].description for form in SERVING_FORMS
    )
    assert all(c in TrainConfig.model_fields["calibration"].description for c in CALIBRATIONS)
    typed = [f.name for f in CLI.glob("*.py") if "tfidf-logreg | transformer" in f.read_text()]
    assert typed == []


def test_column_defaults_are_the_datasets_column_names() -> None:
    from sentiops.data import datasets
    from sentiops.params import LABEL_COLUMN, TEXT_COLUMN

    assert (TEXT_COLUMN, LABEL_COLUMN) == (datasets.TEXT, datasets.LABEL)


def test_options_left_out_keep_the_config_file_s_values(tmp_path: Path, monkeypatch) -> None:
    """`train --config FILE`: a field of the file wins over an option left at its default, an
    option given wins over the file; an empty list option keeps the field's default."""
    import json

    from typer.testing import CliRunner

    from sentiops.training import train as training

    seen: dict[str, Any] = {}

    def fake_train(cfg: TrainConfig, *_: Any, **__: Any) -> None:
        seen["cfg"] = cfg
        raise typer.Exit(0)

    monkeypatch.setattr(training, "train", fake_train)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"c": 0.5, "epochs": 7, "model_type": "transformer"}))
    argv = ["train", "--data", "d.csv", "--model-type", "tfidf-logreg", "--output", "m"]
    res = CliRunner().invoke(app, [*argv, "--epochs", "2", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    got = seen["cfg"]
    assert (got.c, got.epochs, got.model_type) == (0.5, 2, "tfidf-logreg")
    assert got.train_extra == [] and got.batch_size == default_of(TrainConfig, "batch_size")


def test_validate_has_an_option_for_every_data_config_field() -> None:
    from sentiops.params import DataConfig

    params = params_of("validate")
    for name, field in DataConfig.model_fields.items():
        assert field.description in params[name].help, name
        assert (
            params[name].required
            if name == "data"
            else params[name].default == default_of(DataConfig, name)
        )
