"""The mains of studies/depth/dvc.yaml's stages, one module each (so that editing the report retrains no cell):
`prepare`, `train` (one cell), `report`. DVC runs them in studies/depth; `root` is the project root."""
from .prepare import prepare
from .report import report
from .train import train

__all__ = ["prepare", "report", "train"]
