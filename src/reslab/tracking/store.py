"""Where runs go: the tracking URI, the check that a tracking server answers and takes the login before a stage
works, and the experiment (created on first use, with its artifact location)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from ..errors import TrackingServerError

SERVER_PROBE_TIMEOUT_S = 10.0  # one bounded request: MLflow's own client retries a dead server for minutes
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # SQLAlchemy stores other than SQLite, e.g. postgresql+psycopg
CREDENTIALS_FILE = "~/.mlflow/credentials"  # MLflow's own login file: [mlflow] mlflow_tracking_username, ..._password
# what went wrong, inside a requests error's message (which nests urllib3's)
SSL_REASON = re.compile(r"\[SSL[^\]]*\][^('\")]*")  # [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ...
ERRNO_REASON = re.compile(r"\[Errno[^\]]*\][^'\")]*")  # [Errno 111] Connection refused


def store_root(root: Path) -> Path:
    """The project whose own store (mlflow.db, mlartifacts/) a stage at `root` records into: `root`, except in a
    DVC experiment run outside the workspace (`dvc exp run --queue` / `--temp`, then `dvc queue start`), where DVC
    runs the stages in a throwaway copy under <project>/.dvc/tmp/exps/ and names the project in DVC_ROOT; runs
    recorded into the copy's store would be deleted with it."""
    root = Path(root).resolve()
    project = os.environ.get("DVC_ROOT")
    if project and root.is_relative_to(Path(project).resolve() / ".dvc" / "tmp"):
        return Path(project).resolve()
    return root


def tracking_uri(root: Path) -> str:
    """An explicit MLFLOW_TRACKING_URI wins; else an absolute sqlite:///<project>/mlflow.db (MLflow 3's default
    store), the project being `store_root(root)`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root(root) / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    """A store that lives in one folder of this machine: an SQLite file, a file: store, a plain path.

    A database server (postgresql://...) is not: runs may come from several machines, and no project folder is
    theirs to share; see `check_store`."""
    return uri.startswith(("sqlite:", "file:")) or ("://" not in uri and not uri.startswith("databricks"))


def _scheme(uri: str) -> str:
    """'http', 'postgresql', ... ('postgresql+psycopg' -> 'postgresql'); '' for a plain path."""
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def _redacted(uri: str) -> str:
    """The URI without a password, for messages."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", uri)


def _probe_server(uri: str, timeout: float = SERVER_PROBE_TIMEOUT_S) -> None:
    """One request to the tracking server that also reaches its backend store, sent with MLflow's own credentials
    and TLS settings (`mlflow.utils.credentials.get_default_host_creds`: MLFLOW_TRACKING_USERNAME and _PASSWORD or
    ~/.mlflow/credentials, MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_SERVER_CERT_PATH, ...); raise TrackingServerError
    unless it answers and takes the login. A 403 counts as an answer: the login is good, and what the account may do
    is the server's to check, request by request."""
    import requests
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds(uri)
    basic = (creds.username, creds.password) if creds.username and creds.password else None
    bearer = {"Authorization": f"Bearer {creds.token}"} if creds.token and not basic else {}
    try:
        answer = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name",
                              params={"experiment_name": "Default"}, auth=basic, headers=bearer,
                              verify=creds.server_cert_path or not creds.ignore_tls_verification,
                              cert=creds.client_cert_path, timeout=timeout)
    except requests.exceptions.SSLError as e:
        raise TrackingServerError(
            f"the MLflow tracking server MLFLOW_TRACKING_URI={_redacted(uri)} is not reachable: its TLS certificate "
            f"is not trusted ({_reason(e, SSL_REASON)}). A certificate of your own CA or a "
            "self-signed one: set MLFLOW_TRACKING_SERVER_CERT_PATH to its PEM file (docs/security.md)") from None
    except requests.exceptions.Timeout:
        problem = f"no answer within {timeout:g} s"
    except requests.exceptions.RequestException as e:  # refused, reset, no such host
        problem = f"no answer ({_reason(e, ERRNO_REASON)})"
    else:
        if answer.status_code == 401 and not (creds.auth or creds.aws_sigv4):  # a plugin's login is its own
            raise TrackingServerError(f"the MLflow tracking server MLFLOW_TRACKING_URI={_redacted(uri)} "
                                      f"{_refused_login(creds.username, creds.password, creds.token)}")
        if answer.status_code < 500:  # 404: no such experiment; 403: logged in, not allowed to read it
            return
        problem = (f"it answered HTTP {answer.status_code} ({answer.reason}): its backend store may be down; see "
                   "the server's log")
    raise TrackingServerError(
        f"the MLflow tracking server MLFLOW_TRACKING_URI={_redacted(uri)} is not reachable: {problem}. Start it "
        "(on the server machine: scripts/mlflow_server.sh start DIR, which prints the URI to use), or unset "
        "MLFLOW_TRACKING_URI to record runs in this project's own mlflow.db")


def _reason(error: Exception, pattern: re.Pattern) -> str:
    """The part of a requests error's message that says what went wrong, else the whole message."""
    found = pattern.search(str(error))
    return found.group(0).strip() if found else str(error)


def _refused_login(username: str | None, password: str | None, token: str | None) -> str:
    """Why the server answered 401, and where the login comes from (never the password itself)."""
    how = ("MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or mlflow_tracking_username and "
           f"mlflow_tracking_password under [mlflow] in {CREDENTIALS_FILE}, mode 0600)")
    if token and not (username and password):
        return f"refused the token in MLFLOW_TRACKING_TOKEN (HTTP 401); this server may want {how}"
    if not username or not password:
        missing = "no login is set" if not username else f"user {username!r} has no password set"
        return f"asks for a login (HTTP 401) and {missing}: set {how} to your account on it"
    sources = [name for name, given in (("MLFLOW_TRACKING_USERNAME", os.environ.get("MLFLOW_TRACKING_USERNAME")),
                                        ("MLFLOW_TRACKING_PASSWORD", os.environ.get("MLFLOW_TRACKING_PASSWORD")))
               if given]
    if len(sources) < 2:
        sources.append(CREDENTIALS_FILE)
    return (f"refused the login of user {username!r} (HTTP 401: a wrong password, or no such account): correct it in "
            f"{' and '.join(sources)}, where it came from; accounts are the server admin's "
            "(scripts/mlflow_accounts.py)")


_warned_database: set[str] = set()  # URIs already warned about in this process: the warning is said once


def check_store(root: Path) -> str:
    """Check the tracking store before a stage does any work, and return its URI.

    A tracking server (http, https) must answer one bounded request, else TrackingServerError: a stage never
    trains for nothing because its results cannot be recorded. A database URI (postgresql://...) with no server in
    front is allowed, with a warning: runs and metrics are shared, but artifacts (models, figures) go to MLflow's
    default folder, ./mlruns, on whichever machine creates the experiment, where other machines cannot reach them.
    Several machines need scripts/mlflow_server.sh (a server on the same database, with proxied artifacts).

    Args:
        root: project root (the default store is <root>/mlflow.db).
    """
    uri = tracking_uri(root)
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        _probe_server(uri)
    elif scheme in DATABASE_SCHEMES and uri not in _warned_database:
        _warned_database.add(uri)
        print(f"reslab: warning: MLFLOW_TRACKING_URI is a {scheme} database with no MLflow server in front: "
              "artifacts (models, figures) stay on the machine that creates the experiment (MLflow's default "
              "./mlruns). For several machines, start scripts/mlflow_server.sh on this database and set "
              "MLFLOW_TRACKING_URI=http://HOST:PORT instead.", file=sys.stderr)
    return uri


def setup(root: Path, experiment_name: str) -> str:
    """Point MLflow at the project's store (checked by `check_store`) and return the experiment id (created on
    first use).

    Artifacts of a local store go to <project>/mlartifacts (`store_root`). A tracking server keeps them where its
    --artifacts-destination says (nothing is written into the project); a database without a server leaves them
    to MLflow's default location.

    Args:
        root: project root.
        experiment_name: the MLflow experiment (params.yaml's mlflow.experiment_name).
    """
    uri = check_store(root)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment_name)
    if exp is not None:
        return exp.experiment_id
    location = (store_root(root) / "mlartifacts").as_uri() if _is_local(uri) else None
    try:
        return client.create_experiment(experiment_name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another process created it first
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            raise
        return exp.experiment_id
