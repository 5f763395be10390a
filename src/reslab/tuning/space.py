"""The search space of one role: `tune.search_space.<role>` -> dimensions, a trial's draw -> dotted params keys.

A search-space key is either a dotted key of the role's own training section (`train_resnet.lr`,
`train_resnet.augment_magnitude`, `train_baseline.model_args.dropout`), or, for the resnet, one of the derived
architecture dimensions `depth`, `stages` and `width`, which together set `train_resnet.model_args.depths` and
`.widths`. Sections both models read (`augment`, `train`) are not tuned per role: one role's tuned value would
silently change the other model's training. A typed key's bounds and messages come from reslab.config: each bound is
validated by building the overridden Params exactly as params.yaml is loaded, so a range can never admit a value
params.yaml rejects; `model_args` keys are checked by building the model (`check_models`).
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import optuna

from ..config import ConfigError, Params, TuneConfig, check_value, field_type, flatten, to_dict, with_overrides
from ..layout import ROLES
from ..models import create_model

# Derived dimensions: stage i has `depth` units of `width * 2**i` channels (the study's network doubles 32 -> 64).
ARCHITECTURE = ("depth", "stages", "width")
ARCHITECTURE_ROLES = ("resnet",)  # models built from model_args depths and widths
SHARED = {
    "augment": "augment is read by both models: tune train_{role}.augment_magnitude (this model's own scale of "
               "the augment ranges) instead",
    "train": "train is the budget both models share; tuning it for one would make the comparison unfair",
}
NOT_SEARCHABLE = {  # keys of a role's section, by name
    "model": "the study's model is part of its signature (run another study to change it)",
}


@dataclass(frozen=True)
class Dimension:
    """One searched (or fixed) parameter.

    Args:
        name: the search-space key, also the Optuna parameter name.
        kind: "int", "float" (ranges) or "choice" (true/false or names).
        low: smallest value (choices: the first).
        high: largest value (choices: the last).
        step: int step.
        log: sample floats log-uniformly (learning rates).
        choices: the values of a "choice" dimension.
    """

    name: str
    kind: Literal["int", "float", "choice"]
    low: Any
    high: Any
    step: int = 1
    log: bool = False
    choices: tuple = ()

    @property
    def fixed(self) -> bool:
        return len(self.choices) == 1 if self.kind == "choice" else self.low == self.high


def _kind(tp: Any) -> str | None:
    """The dimension kind of a params annotation (None: cannot be searched); `float | None` searches floats."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _kind(options[0]) if len(options) == 1 else None
    if tp is bool or typing.get_origin(tp) is Literal:
        return "choice"
    return {int: "int", float: "float"}.get(tp)


def _valid(params: Params, key: str, value: Any, where: str) -> Any:
    """`value` as params.yaml would hold it at `key` (validated and coerced by reslab.config)."""
    try:
        overridden = with_overrides(params, {key: value})
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return functools.reduce(getattr, key.split("."), overridden)


def _range(key: str, raw: Any, kind: str, valid: typing.Callable[[Any], Any], where: str) -> Dimension:
    """[low, high], [low, high, step] (ints) or one value (fixed), each bound checked by `valid`."""
    if not isinstance(raw, list):
        value = valid(raw)
        return Dimension(key, kind, value, value)  # type: ignore[arg-type]
    if not (len(raw) == 2 or (kind == "int" and len(raw) == 3)):
        shape = "[low, high] or [low, high, step]" if kind == "int" else "[low, high]"
        raise ConfigError(f"{where}: {raw!r}; accepted: one value or {shape}")
    low, high = valid(raw[0]), valid(raw[1])
    if low is None or high is None:
        raise ConfigError(f"{where}: {raw!r}; a range needs numbers")
    step = check_value(raw[2], int, where) if len(raw) == 3 else 1
    if low > high:
        raise ConfigError(f"{where}: {raw!r}; low must not exceed high")
    if kind == "int" and (step < 1 or (high - low) % step):
        raise ConfigError(f"{where}: {raw!r}; the step must be >= 1 and divide high - low")
    return Dimension(key, kind, low, high, step, log=key.rsplit(".", 1)[-1] == "lr")  # type: ignore[arg-type]


def _choices(key: str, raw: Any, valid: typing.Callable[[Any], Any], where: str) -> Dimension:
    values = raw if isinstance(raw, list) else [raw]
    if not values or len(set(map(repr, values))) != len(values):
        raise ConfigError(f"{where}: {raw!r}; accepted: one value or a list of distinct values, e.g. [true, false]")
    choices = tuple(valid(v) for v in values)
    return Dimension(key, "choice", choices[0], choices[-1], choices=choices)


def _model_args_dimension(key: str, raw: Any, where: str) -> Dimension:
    """A `model_args` key: untyped in params.yaml, so numbers are ranges (ints if every bound is an int) and
    anything else a list of choices; `check_models` then builds the model with every bound."""
    values = raw if isinstance(raw, list) else [raw]
    numbers = values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numbers:
        return _choices(key, raw, lambda v: v, where)
    kind = "int" if all(isinstance(v, int) for v in values) else "float"
    return _range(key, raw, kind, lambda v: check_value(v, {"int": int, "float": float}[kind], where), where)


def _params_dimension(params: Params, role: str, key: str, raw: Any) -> Dimension:
    where = f"tune.search_space.{role}.{key}"
    section, _, name = key.partition(".")
    if section in SHARED:
        raise ConfigError(f"{where}: cannot be tuned per model: {SHARED[section].format(role=role)}")
    if section != f"train_{role}":
        other = section.removeprefix("train_")
        hint = (f"it belongs to the {other} model: tune it with `reslab tune --role {other}` "
                f"(tune.search_space.{other})") if other in ROLES else "not a training section"
        raise ConfigError(f"{where}: cannot be searched for the {role} model ({hint}); accepted: dotted keys of "
                          f"train_{role} (e.g. train_{role}.lr)"
                          + (f" and {', '.join(ARCHITECTURE)}" if role in ARCHITECTURE_ROLES else ""))
    if name in NOT_SEARCHABLE:
        raise ConfigError(f"{where}: cannot be searched: {NOT_SEARCHABLE[name]}")
    if name.startswith("model_args."):
        return _model_args_dimension(key, raw, where)
    try:
        tp = field_type(Params, key)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    kind = _kind(tp)
    if kind is None:
        raise ConfigError(f"{where}: cannot be searched (not a number, true/false or a name; model_args is searched "
                          f"key by key, e.g. train_{role}.model_args.dropout)")
    valid = functools.partial(_valid, params, key, where=where)
    return _range(key, raw, kind, valid, where) if kind != "choice" else _choices(key, raw, valid, where)


def _architecture_dimension(role: str, key: str, raw: Any) -> Dimension:
    where = f"tune.search_space.{role}.{key}"

    def valid(value: Any) -> int:
        value = check_value(value, int, where)
        if value < 1:
            raise ConfigError(f"{where}: {value!r} is out of range; accepted: an integer >= 1")
        return value

    return _range(key, raw, "int", valid, where)


def parse_search_space(params: Params, role: str, raw: dict[str, Any]) -> tuple[Dimension, ...]:
    """`tune.search_space.<role>` -> dimensions, in a fixed order (sampling order is part of a seeded study): the
    architecture, then params keys in params.yaml's order, whatever the order they are written in.

    Args:
        params: the base params (each bound is validated against them).
        role: the model tuned (baseline | resnet).
        raw: the role's mapping from params.yaml.
    """
    where = f"tune.search_space.{role}"
    derived = f" or {', '.join(ARCHITECTURE)}" if role in ARCHITECTURE_ROLES else ""
    if not raw:
        raise ConfigError(f"{where}: empty or missing; give at least one dotted key of train_{role} "
                          f"(e.g. train_{role}.lr){derived}")
    for key in raw:
        if key in ARCHITECTURE and role not in ARCHITECTURE_ROLES:
            raise ConfigError(f"{where}.{key}: {', '.join(ARCHITECTURE)} derive the depths and widths of the "
                              f"{' and '.join(ARCHITECTURE_ROLES)} model only; for the {role} model tune keys of "
                              f"train_{role} (e.g. train_{role}.model_args.hidden)")
        if not isinstance(key, str) or ("." not in key and key not in ARCHITECTURE):
            raise ConfigError(f"{where}.{key}: unknown key; accepted: a dotted key of train_{role} "
                              f"(e.g. train_{role}.lr){derived}")
    given = [k for k in ARCHITECTURE if k in raw]
    if given and len(given) < len(ARCHITECTURE):
        missing = ", ".join(f"{where}.{k}" for k in ARCHITECTURE if k not in raw)
        raise ConfigError(f"{missing}: missing; the architecture is tuned as depth x stages x width together "
                          f"(give a single value to fix one)")
    derived_keys = [k for k in (f"train_{role}.model_args.depths", f"train_{role}.model_args.widths") if k in raw]
    if given and derived_keys:
        raise ConfigError(f"{where}.{derived_keys[0]}: set by {', '.join(ARCHITECTURE)}; tune one or the other")
    order = {key: i for i, key in enumerate(flatten(to_dict(params)))}
    keys = sorted((k for k in raw if "." in k), key=lambda k: (order.get(k, len(order)), k))
    return (tuple(_architecture_dimension(role, k, raw[k]) for k in given)
            + tuple(_params_dimension(params, role, k, raw[k]) for k in keys))


def tune_config(params: Params, role: str, n_trials: int | None = None,
                study_name: str | None = None) -> tuple[TuneConfig, tuple[Dimension, ...]]:
    """params.tune for one role (validated by reslab.config on load), with command-line overrides, `{role}` filled
    into the study name and `epochs: null` resolved to train.epochs; and the role's parsed search space.

    Args:
        params: the loaded params.
        role: the model tuned (baseline | resnet).
        n_trials: command-line override of tune.n_trials.
        study_name: command-line override of tune.study_name.
    """
    stage = params.model_stage(role)  # fails for an unknown role, naming the valid ones
    overrides = {k: v for k, v in (("tune.n_trials", n_trials), ("tune.study_name", study_name)) if v is not None}
    cfg = with_overrides(params, overrides).tune if overrides else params.tune
    cfg = dataclasses.replace(cfg, study_name=cfg.study_name.format(role=role),
                              epochs=cfg.epochs if cfg.epochs is not None else params.train.epochs)
    space = parse_search_space(params, role, cfg.search_space.get(role) or {})
    tuned_augment = [d.name for d in space if d.name == f"train_{role}.augment_magnitude"]
    if tuned_augment and not stage.augment and f"train_{role}.augment" not in cfg.search_space[role]:
        raise ConfigError(f"tune.search_space.{role}.{tuned_augment[0]}: train_{role}.augment is false, so "
                          f"augmentation is off and cannot be tuned; set it to true or drop the key")
    return cfg, space


def suggest(trial: optuna.Trial, space: Sequence[Dimension]) -> dict[str, Any]:
    """Draw one configuration; fixed dimensions are returned without asking Optuna.

    Args:
        trial: the Optuna trial (a FixedTrial works too).
        space: the parsed search space.
    """
    out: dict[str, Any] = {}
    for d in space:
        if d.fixed:
            out[d.name] = d.low
        elif d.kind == "int":
            out[d.name] = trial.suggest_int(d.name, d.low, d.high, step=d.step)
        elif d.kind == "float":
            out[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.log)
        else:
            out[d.name] = trial.suggest_categorical(d.name, list(d.choices))
    return out


def trial_overrides(sampled: dict[str, Any], role: str) -> dict[str, Any]:
    """A drawn configuration as dotted params keys, all in train_<role>: what the trial trains with and what
    `--apply` writes.

    Args:
        sampled: output of `suggest`.
        role: the model tuned.
    """
    out: dict[str, Any] = {}
    if "stages" in sampled:
        stages, depth, width = sampled["stages"], sampled["depth"], sampled["width"]
        out[f"train_{role}.model_args.depths"] = [depth] * stages
        out[f"train_{role}.model_args.widths"] = [width * 2**i for i in range(stages)]
    out.update({k: v for k, v in sampled.items() if k not in ARCHITECTURE})
    return out


def check_models(params: Params, role: str, space: Sequence[Dimension]) -> None:
    """Fail early when a configuration at the bounds cannot be built at data.image_size: the deepest architecture,
    then each model_args dimension at each of its bounds (or choices)."""
    stage = params.model_stage(role)
    by_name = {d.name: d for d in space}
    base = dict(stage.model_args)
    if "stages" in by_name:
        stages, depth, width = by_name["stages"].high, by_name["depth"].low, by_name["width"].low
        base.update(depths=[depth] * stages, widths=[width] * stages)
    builds = [("stages" if "stages" in by_name else None, base)]
    for d in space:
        if d.name.startswith(f"train_{role}.model_args."):
            arg = d.name.rsplit(".", 1)[-1]
            builds += [(d.name, {**base, arg: value}) for value in d.choices or (d.low, d.high)]
    for key, model_args in builds:
        try:
            create_model(stage.model, num_classes=2, image_size=params.data.image_size, **model_args)
        except (ValueError, TypeError) as e:
            what = f"tune.search_space.{role}.{key}" if key else f"train_{role}.model_args"
            raise ConfigError(f"{what}: train_{role}.model {stage.model!r} cannot be built with "
                              f"{model_args}: {e}") from None
