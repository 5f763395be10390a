"""No telemetry and no network from a library import. Imported (for its effect) before MLflow anywhere in reslab:
by `cli`, `tracking` and `serving`; an explicit setting in the environment wins."""
import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
