"""The options made of config fields, and options more than one command module takes.

An option that sets a field of `DataConfig`, `TrainConfig` or `GateConfig` (sentiops.params) is
declared there and only there: `field_option` makes a command's keyword-only parameter of the
field (its type, its default, its description as the help) and `with_options` adds such
parameters to a command's signature, which Typer reads. `sentiops train` (every TrainConfig
field), `validate` (every DataConfig field), `gate` and `pipeline run / submit` (every gate
threshold), `evaluate`, `tune` and `quickstart` take theirs that way; tests/cli checks it.
Imports nothing of the CLI.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from sentiops.params import GateConfig, TrainConfig

F = TypeVar("F", bound=Callable[..., Any])

DataOpt = Annotated[list[str], typer.Option(help=TrainConfig.model_fields["data"].description)]

#: `field_option`'s default when none is given: the field's own.
FIELD_DEFAULT: Any = object()

#: TrainConfig fields without an option: a JSON object has no flag (use --config).
NOT_OPTIONS = ("tags",)
#: GateConfig fields the gate's options set (its seed is the command's own --seed).
GATE_FIELDS = tuple(name for name in GateConfig.model_fields if name != "seed")


def field_option(
    model: type[BaseModel],
    name: str,
    *,
    default: Any = FIELD_DEFAULT,
    help: str | None = None,
    required: bool = False,
) -> inspect.Parameter:
    """A command's keyword-only parameter for field `name` of `model`: option --<name> (dashes
    for underscores), the field's type, default (`default` overrides it: e.g. None where the
    command leaves the value to someone else) and description as help (`help` is added)."""
    field = model.model_fields[name]
    annotation: Any = field.annotation
    if required:
        value: Any = inspect.Parameter.empty
    elif default is not FIELD_DEFAULT:
        value = default
    elif field.default_factory is not None:
        value, annotation = None, annotation | None  # empty: the factory's value
    else:
        value = field.default
    if value is None and not _optional(annotation):
        annotation = annotation | None
    text = " ".join(filter(None, (field.description, help)))
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=value,
        annotation=Annotated[annotation, typer.Option(help=text)],
    )


def parameter(
    name: str, annotation: Any, *flags: str, default: Any = None, help: str
) -> inspect.Parameter:
    """A command's keyword-only parameter for an option of its own (not a config field)."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, typer.Option(*flags, help=help)],
    )


def _optional(annotation: Any) -> bool:
    return type(None) in getattr(annotation, "__args__", ())


def with_options(*extra: inspect.Parameter, own_last: bool = False) -> Callable[[F], F]:
    """A command whose signature (what Typer reads, in this order) is its own parameters and
    then `extra` (`own_last`: the other way round); the command receives the extra ones in its
    `**` parameter, by name."""

    def decorate(fn: F) -> F:
        own_sig = inspect.signature(fn, eval_str=True)
        own = [p for p in own_sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        params = [*extra, *own] if own_last else [*own, *extra]
        fn.__signature__ = own_sig.replace(parameters=params)  # type: ignore[attr-defined]
        return fn

    return decorate


def train_options(*, required: Iterable[str] = ()) -> tuple[inspect.Parameter, ...]:
    """One option per TrainConfig field but NOT_OPTIONS: the `required` ones first (without a
    default), then the rest in the order of the fields."""
    must = tuple(required)
    rest = [n for n in TrainConfig.model_fields if n not in NOT_OPTIONS and n not in must]
    return tuple(field_option(TrainConfig, name, required=name in must) for name in (*must, *rest))


def gate_options() -> tuple[inspect.Parameter, ...]:
    """One option per GATE_FIELDS field, with the GateConfig default."""
    return tuple(field_option(GateConfig, name) for name in GATE_FIELDS)


def explicit(ctx: typer.Context, name: str) -> bool:
    """Was option `name` given (on the command line or by environment), not left at its default?"""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def config_values(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` for `model`, less the options left empty whose field's default is made by a
    factory (an empty list): the field keeps that default."""
    fields = model.model_fields
    return {
        k: v
        for k, v in values.items()
        if not (v is None and k in fields and fields[k].default_factory is not None)
    }


def gate_config(values: Mapping[str, Any], **fixed: Any) -> GateConfig:
    """GateConfig of the gate options in `values` (the ones missing keep their defaults); a bad
    value is a usage error naming the option."""
    chosen = {k: values[k] for k in GATE_FIELDS if values.get(k) is not None}
    try:
        return GateConfig.model_validate(chosen | fixed)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise typer.BadParameter(problems) from None
