"""The model registry: the served model's registered versions and the `@champion` alias that `reslab predict` and
`mlflow models serve models:/NAME@champion` load.

A version carries the SHA-256 of its weights file as the tag `weights_sha256`, written when it is registered (from
the logged model's own file, checked against its training run's tag); `verified_weights` refuses a download whose
file does not match it. The tag lives in the tracking database, so whoever can change artifacts in the artifact
store cannot change it; who may register versions and move the alias is the server's permissions'
(docs/security.md)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

DESCRIPTION = "reslab: the champion, chosen on validation accuracy (the test split plays no part)"


def set_champion(model_uri: str, registered_name: str, run_id: str, alias: str = "champion") -> str:
    """Register `model_uri` as a new version of `registered_name`, its weights' SHA-256 as the version's
    `weights_sha256` tag, and point `alias` at it; returns the version.

    Args:
        model_uri: the logged model (models:/m-...), as `log_model` returned it.
        registered_name: the registered model (params.yaml's mlflow.registered_model_name), created on first use.
        run_id: the training run that logged the model (the version's `source_run_id` tag).
        alias: the alias to move.
    """
    from .training_run import WEIGHTS_TAG  # here, as below: it brings torch, which the tracking face does not need

    client = MlflowClient()
    sha256 = logged_weights_sha256(model_uri, run_id)
    try:
        client.get_registered_model(registered_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(registered_name, description=DESCRIPTION)
    version = mlflow.register_model(model_uri, registered_name, tags={"source_run_id": run_id, WEIGHTS_TAG: sha256})
    client.set_registered_model_alias(registered_name, alias, version.version)
    return str(version.version)


def weights_file(model_dir: Path, model_uri: str) -> Path:
    """The one weights file (.pt) in a downloaded model."""
    found = sorted(Path(model_dir).rglob("*.pt"))
    if len(found) != 1:
        raise ValueError(f"{model_uri} holds {len(found)} weights files (.pt), not one: it was not logged by this "
                         "reslab; rerun `dvc repro`")
    return found[0]


def logged_weights_sha256(model_uri: str, run_id: str) -> str:
    """The SHA-256 of a logged model's weights file, as its artifact store holds it; ValueError when it differs from
    the `weights_sha256` tag its training run recorded from the file it saved (a run without the tag: not checked).
    """
    from ..models.serialization import model_file_sha256
    from .training_run import WEIGHTS_TAG

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        sha256 = model_file_sha256(weights_file(Path(local), model_uri))
    recorded = MlflowClient().get_run(run_id).data.tags.get(WEIGHTS_TAG)
    if recorded is not None and recorded != sha256:
        raise ValueError(f"{model_uri}: its weights file has SHA-256 {sha256}, not the {recorded} that its training "
                         f"run {run_id} saved ({WEIGHTS_TAG}): the artifact was changed after logging; not registered")
    return sha256


def verified_weights(version: ModelVersion, dst: Path) -> Path:
    """Download a registered version (`MlflowClient().get_model_version_by_alias(...)`) into `dst` and return its
    weights file, checked against the version's `weights_sha256` tag: ValueError for a version without the tag or a
    file that does not match it, before anything reads the file.

    Args:
        version: the registered version.
        dst: an empty folder to download into.
    """
    from ..models.serialization import model_file_sha256
    from .training_run import WEIGHTS_TAG

    shown = f"models:/{version.name}/{version.version}" + "".join(f" (@{a})" for a in version.aliases)
    expected = version.tags.get(WEIGHTS_TAG)
    if not expected:
        raise ValueError(f"{shown} has no {WEIGHTS_TAG} tag, so nothing vouches for its weights (registered by an "
                         "older reslab, or not by the pipeline); not loaded. Register it again: dvc repro --force "
                         "--single-item evaluate")
    uri = f"models:/{version.name}/{version.version}"  # this version, even if the alias moves meanwhile
    path = weights_file(Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))), uri)
    actual = model_file_sha256(path)
    if actual != expected:
        raise ValueError(f"{shown}: its weights file {path.name} has SHA-256 {actual}, not the {expected} recorded "
                         f"when the version was registered ({WEIGHTS_TAG} tag): it was changed since; not loaded")
    return path
