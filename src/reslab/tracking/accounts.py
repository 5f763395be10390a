"""Accounts of a tracking server with MLflow's authentication (`scripts/mlflow_server.sh start DIR --auth`, the
default beyond 127.0.0.1), managed by its admin through MLflow's own client (`get_app_client("basic-auth")`).

Two roles, as permissions on the project's experiment and registered model (docs/security.md):

- `pipeline`: MANAGE: runs the stages and `reslab tune` (creates and writes runs, logs models), registers versions
  and moves `@champion`;
- `viewer`: READ: sees every run, metric, artifact and model, changes nothing. (The server's default permission is
  READ too; the explicit grant keeps a viewer reading where an admin makes that default NO_PERMISSIONS.)

Giving a role first creates the experiment and the registered model as the admin when they are missing, so that no
other account can create them first and own them (MLflow makes a resource's creator its manager)."""
from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .registry import DESCRIPTION

ROLES = {"pipeline": "MANAGE", "viewer": "READ"}


def _auth_client(tracking_uri: str):
    """MLflow's client of the server's accounts and permissions (mlflow.server.auth.client.AuthServiceClient)."""
    from mlflow.server import get_app_client

    return get_app_client("basic-auth", tracking_uri=tracking_uri)


def add_account(tracking_uri: str, username: str, password: str, role: str, experiment_name: str,
                registered_model_name: str) -> dict[str, str]:
    """Create an account and give it `role` (`give_role`); returns what it was granted.

    Args:
        tracking_uri: the server (http[s]://HOST:PORT); the caller's login (MLflow's credentials) is the admin's.
        username: the new account.
        password: its password (MLflow's policy applies: 12 characters or more).
        role: pipeline | viewer.
        experiment_name: the project's experiment (params.yaml's mlflow.experiment_name).
        registered_model_name: the project's registered model (mlflow.registered_model_name).
    """
    _check_role(role)
    _auth_client(tracking_uri).create_user(username, password)
    return give_role(tracking_uri, username, role, experiment_name, registered_model_name)


def give_role(tracking_uri: str, username: str, role: str, experiment_name: str,
              registered_model_name: str) -> dict[str, str]:
    """Set an existing account's permission on the experiment and the registered model to the role's (any earlier
    grant on them is replaced), creating both first where missing; returns {resource: permission}.

    Args: as `add_account`'s.
    """
    _check_role(role)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    try:
        client.get_registered_model(registered_model_name)
    except MlflowException:
        client.create_registered_model(registered_model_name, description=DESCRIPTION)
    auth = _auth_client(tracking_uri)
    granted = {}
    resources = [("experiment", experiment_id, f"experiment {experiment_name!r} (id {experiment_id})"),
                 ("registered_model", registered_model_name, f"registered model {registered_model_name!r}")]
    for kind, key, shown in resources:
        try:
            auth.revoke_user_permission(username, kind, key)
        except MlflowException:  # none to replace
            pass
        auth.grant_user_permission(username, kind, key, ROLES[role])
        granted[shown] = ROLES[role]
    return granted


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role {role!r}: accepted: {', '.join(ROLES)}")
