"""Writing params.yaml: dotted keys set in place, comments and layout kept (`reslab tune --apply`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from .loading import load_params, set_dotted
from .sections import ConfigError

def write_params(params_file: Path, overrides: Mapping[str, Any],
                 validate: Callable[[Path], Any] = load_params) -> None:
    """Set dotted keys in a params file, keeping its comments and layout (ruamel.yaml round trip); the result is
    validated before it replaces the file (`reslab tune --apply`, `reslab depth-study profile`).

    Args:
        params_file: params.yaml.
        overrides: dotted key -> value; lists are written in flow style (`[2, 2]`).
        validate: loads the written file, raising ConfigError when it is invalid (default: as params.yaml).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = rt.load(params_file.read_text())
    for key, value in overrides.items():
        if isinstance(value, list):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        set_dotted(doc, key, value)
    tmp = params_file.with_name(f".{params_file.name}.tmp")
    with tmp.open("w") as f:
        rt.dump(doc, f)
    try:
        validate(tmp)
    except ConfigError:
        tmp.unlink()
        raise
    tmp.replace(params_file)
