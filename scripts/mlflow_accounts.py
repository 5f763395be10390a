"""Accounts of the shared MLflow server when it runs with authentication (scripts/mlflow_server.sh; docs/security.md),
managed by its admin:

    python scripts/mlflow_accounts.py add NAME --role pipeline|viewer [--password-file FILE]
    python scripts/mlflow_accounts.py role NAME pipeline|viewer       # change an account's role

The server is MLFLOW_TRACKING_URI; the admin logs in as every MLflow client does (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD, or ~/.mlflow/credentials). The roles are permissions on the experiment and the registered
model that params.yaml's `mlflow` section names (`reslab.tracking.accounts`): `pipeline` may run the stages and
`reslab tune`, register versions and move @champion; `viewer` reads. A new account's password comes from
--password-file (its first line; a file only its owner may read, mode 0600), else it is asked twice on the terminal.
"""
from __future__ import annotations

import argparse
import getpass
import os
import stat
import sys
from pathlib import Path

from reslab.config import load_params
from reslab.errors import TrackingServerError
from reslab.tracking.accounts import ROLES, add_account, give_role
from reslab.tracking.store import check_store


def read_password(path: Path | None) -> str:
    """The first line of a private file, or a password typed twice."""
    if path is None:
        if not sys.stdin.isatty():
            raise ValueError("no --password-file, and no terminal to ask on")
        first = getpass.getpass("password of the new account: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    try:
        mode = os.stat(path).st_mode
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ValueError(f"--password-file {path}: {e.strerror or e}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"--password-file {path} has mode {stat.S_IMODE(mode):o}: others may read it; "
                         f"chmod 600 {path}")
    if not lines or not lines[0]:
        raise ValueError(f"--password-file {path} is empty")
    return lines[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlflow_accounts.py", description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="params file naming the experiment and registered model (default: params.yaml)")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create an account with a role")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=list(ROLES))
    add.add_argument("--password-file", type=Path, default=None)
    role = sub.add_parser("role", help="set an existing account's role")
    role.add_argument("name")
    role.add_argument("role", choices=list(ROLES))
    args = parser.parse_args(argv)

    from mlflow.exceptions import MlflowException

    try:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri.startswith(("http://", "https://")):
            raise ValueError(f"MLFLOW_TRACKING_URI={uri or '(unset)'}: accounts live on a tracking server; set it to "
                             "the URI that scripts/mlflow_server.sh start printed")
        check_store(Path("."))  # the server answers and takes the admin's login, or one clear line
        params = load_params(args.params).mlflow
        if args.action == "add":
            granted = add_account(uri, args.name, read_password(args.password_file), args.role,
                                  params.experiment_name, params.registered_model_name)
        else:
            granted = give_role(uri, args.name, args.role, params.experiment_name, params.registered_model_name)
    except (TrackingServerError, ValueError, MlflowException) as e:
        print(f"mlflow_accounts.py: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"{args.name}: {args.role}: " + ", ".join(f"{permission} on {what}" for what, permission in granted.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
