"""Typed, strict view of params.yaml: one dataclass per section, and the one place its nulls become values.

Unknown keys and wrong types fail at load time with the dotted key, the offending value and what would be
accepted (nanoGPT-style strictness), so a typo in params.yaml never silently falls back to a default.

    sections.py  the dataclasses, each checking its own bounds (`violations`); the fixed choices (PRECISIONS, ...)
    presets.py   what each `train.recipe` sets per role: frozen `Preset`s (FAIR, ORIGINAL; PRESETS[recipe][role])
    resolve.py   resolve(params, role) -> TrainingConfig (every null given its value; its RuntimeConfig),
                 resolve_runtime, resolve_interpolation, check_recipe (the check across sections)
    loading.py   YAML and dotted overrides -> the dataclasses; flatten for MLflow
    writing.py   sets keys in params.yaml keeping its comments
"""
from .loading import (check_value, field_type, flatten, from_dict, load_params, parse_override, read_params_file,
                      set_dotted, to_dict, with_overrides)
from .presets import FAIR, ORIGINAL, PRESETS, RECIPES, Preset
from .resolve import RuntimeConfig, TrainingConfig, resolve, resolve_interpolation, resolve_runtime
from .sections import (AUGMENT_RANGES, INITS, INTERPOLATIONS, MAX_MAGNITUDE, PARAMS_FILE, PRECISIONS, PRUNERS,
                       AugmentConfig, ClusterConfig, ConfigError, DataConfig, EvaluateConfig, FilterConfig, MlflowConfig,
                       ModelStageConfig, Params, ReplicatesConfig, Section, SplitConfig, TrainConfig, TuneConfig)
from .writing import write_params

__all__ = ["AUGMENT_RANGES", "FAIR", "INITS", "INTERPOLATIONS", "MAX_MAGNITUDE", "ORIGINAL", "PARAMS_FILE",
           "PRECISIONS", "PRESETS", "PRUNERS", "RECIPES", "AugmentConfig", "ClusterConfig", "ConfigError", "DataConfig",
           "EvaluateConfig", "FilterConfig", "MlflowConfig", "ModelStageConfig", "Params", "Preset",
           "ReplicatesConfig", "RuntimeConfig", "Section", "SplitConfig", "TrainConfig", "TrainingConfig",
           "TuneConfig", "check_value", "field_type", "flatten", "from_dict", "load_params", "parse_override",
           "read_params_file", "resolve", "resolve_interpolation", "resolve_runtime", "set_dotted", "to_dict",
           "with_overrides", "write_params"]
