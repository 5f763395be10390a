"""Reading params.yaml strictly: YAML -> typed sections, dotted-key overrides, flattening for MLflow."""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from .resolve import check_recipe
from .sections import PARAMS_FILE, ConfigError, Params, Section

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if tp is bool:
        return "true | false"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`; return it (ints widen to float). Raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {_type_name(tp)}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if origin is tuple:  # tuple[int, ...]: a YAML list, kept immutable
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug in this module, not user input


def from_dict(cls: type, raw: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    where = prefix or "params"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else str(k) for k in unknown)
        raise ConfigError(f"unknown key {dotted}; valid keys{' of ' + prefix if prefix else ''}: {', '.join(fields)}")
    values = {name: _coerce(raw[name], hints[name], f"{prefix}.{name}" if prefix else name) for name in raw}
    obj = cls(**values)
    if isinstance(obj, Section):
        obj.check(prefix)
    if isinstance(obj, Params):
        check_recipe(obj)  # across sections, on the values each role resolves to
    return obj


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a `key.sub=value` override (value in YAML syntax, as `dvc exp run -S`)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.epochs=2")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def set_dotted(tree: dict, key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict (also a ruamel.yaml document), creating intermediate mappings."""
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def field_type(cls: type, key: str) -> Any:
    """The annotation of dotted key `key` in dataclass `cls` (Params, "augment.magnitude" -> float); ConfigError
    naming the key and the valid ones when it names no typed field (keys inside `model_args` have no type)."""
    node: Any = cls
    parts = key.split(".")
    for i, part in enumerate(parts):
        section = ".".join(parts[:i])
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"{key}: {section} is not a section of typed keys")
        hints = typing.get_type_hints(node)
        if part not in hints:
            raise ConfigError(f"unknown key {key}; valid keys{' of ' + section if section else ''}: "
                              f"{', '.join(hints)}")
        node = hints[part]
    return node


def check_value(value: Any, tp: Any, key: str) -> Any:
    """`value` checked against annotation `tp` as params.yaml's values are (ints widen to float); ConfigError
    naming `key`."""
    return _coerce(value, tp, key)


def with_overrides(params: Params, overrides: Mapping[str, Any]) -> Params:
    """`params` with dotted-key overrides applied to its raw mapping and validated exactly as params.yaml is.

    Args:
        params: the base params.
        overrides: dotted key -> value, e.g. {"augment.magnitude": 0.5}.
    """
    raw = to_dict(params)
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    return from_dict(Params, raw)


def read_params_file(path: str | Path = PARAMS_FILE) -> dict:
    """Read params.yaml into a dict, with clear errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def load_params(path: str | Path = PARAMS_FILE, overrides: list[str] | None = None) -> Params:
    """Load and validate params.yaml, applying `key=value` overrides first."""
    raw = read_params_file(path)
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(raw, key, value)
    try:
        return from_dict(Params, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain dict (for logging)."""
    return dataclasses.asdict(obj)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b': v} (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
