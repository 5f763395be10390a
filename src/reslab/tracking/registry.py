"""The model registry: the served model's registered versions and the `@champion` alias that `reslab predict` and
`mlflow models serve models:/NAME@champion` load."""
from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient


def set_champion(model_uri: str, registered_name: str, run_id: str, alias: str = "champion") -> str:
    """Register `model_uri` as a new version of `registered_name` and point `alias` at it; returns the version.

    Args:
        model_uri: the logged model (models:/m-...), as `log_model` returned it.
        registered_name: the registered model (params.yaml's mlflow.registered_model_name), created on first use.
        run_id: the training run that logged the model (the version's `source_run_id` tag).
        alias: the alias to move.
    """
    client = MlflowClient()
    try:
        client.get_registered_model(registered_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(registered_name, description="reslab: best model on the held-out test split")
    version = mlflow.register_model(model_uri, registered_name, tags={"source_run_id": run_id})
    client.set_registered_model_alias(registered_name, alias, version.version)
    return str(version.version)
