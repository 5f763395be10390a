"""Profiles of the depth study: studies/depth/profiles/<name>.yaml holds the keys a profile sets (cpu, gpu, tiny);
`reslab depth-study profile NAME` writes them into studies/depth/params.yaml, keeping its comments."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ConfigError, flatten, read_params_file, write_params
from .params import load_study_params


def available(profiles_dir: Path) -> list[str]:
    """The profiles' names (file stems) in `profiles_dir`."""
    return sorted(p.stem for p in profiles_dir.glob("*.yaml"))


def profile_overrides(profiles_dir: Path, name: str) -> dict[str, Any]:
    """The dotted keys and values a profile sets; ConfigError naming the profiles there when `name` is not one."""
    path = profiles_dir / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown profile {name!r}; profiles in {profiles_dir}: {', '.join(available(profiles_dir))}")
    return flatten(read_params_file(path))


def apply_profile(params_file: Path, profiles_dir: Path, name: str) -> list[tuple[str, Any, Any]]:
    """Write profile `name` into `params_file` (validated as the study's params before it replaces the file).

    Args:
        params_file: studies/depth/params.yaml.
        profiles_dir: studies/depth/profiles.
        name: the profile (a file stem there).

    Returns:
        (key, old value, new value) for every key whose value changed.
    """
    overrides = profile_overrides(profiles_dir, name)
    before = flatten(read_params_file(params_file))
    try:
        write_params(params_file, overrides, validate=load_study_params)
    except ConfigError as e:
        raise ConfigError(f"profile {name!r} ({profiles_dir / f'{name}.yaml'}): {e}") from None
    return [(k, before.get(k), v) for k, v in overrides.items() if before.get(k) != v]
