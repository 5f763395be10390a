"""Typed, strict view of params.yaml: one dataclass per section.

Unknown keys and wrong types fail at load time with the dotted key, the offending value and what would be
accepted (nanoGPT-style strictness), so a typo in params.yaml never silently falls back to a default.

`sections` holds the dataclasses and range checks (each fact once: precisions, augmentation ranges, bounds),
`loading` turns YAML and dotted overrides into them, `writing` sets keys in params.yaml keeping its comments.
"""
from .loading import (check_value, field_type, flatten, from_dict, load_params, parse_override, read_params_file,
                      set_dotted, to_dict, with_overrides)
from .sections import (AUGMENT_RANGES, FAIR_INIT, FAIR_RECIPE, INITS, INTERPOLATIONS, MAX_MAGNITUDE, ORIGINAL_RECIPE,
                       PARAMS_FILE, PRECISIONS, PRUNERS, RECIPES, AugmentConfig, ConfigError, DataConfig,
                       EvaluateConfig, FilterConfig, MlflowConfig, ModelStageConfig, Params, ReplicatesConfig,
                       SplitConfig, TrainConfig, TuneConfig)
from .writing import write_params

__all__ = ["AUGMENT_RANGES", "FAIR_INIT", "FAIR_RECIPE", "INITS", "INTERPOLATIONS", "MAX_MAGNITUDE", "ORIGINAL_RECIPE", "PARAMS_FILE",
           "PRECISIONS", "PRUNERS", "RECIPES", "AugmentConfig", "ConfigError",
           "DataConfig", "EvaluateConfig", "FilterConfig", "MlflowConfig", "ModelStageConfig", "Params",
           "ReplicatesConfig", "SplitConfig", "TrainConfig", "TuneConfig", "check_value", "field_type", "flatten",
           "from_dict", "load_params", "parse_override", "read_params_file", "set_dotted", "to_dict",
           "with_overrides", "write_params"]
