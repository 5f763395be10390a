"""Errors a user can meet that are not config or data errors (those live in config.sections and data.errors), kept
free of heavy imports so that the CLI can catch them without importing MLflow."""


class TrackingServerError(RuntimeError):
    """MLFLOW_TRACKING_URI names an MLflow tracking server that does not answer (or cannot reach its store, or does
    not trust the client's login, or is not trusted: its TLS certificate).

    Not a ConfigError: the configuration may be right and the server merely down; the message says how to start
    it or how to record into the project's own store instead, or where the login comes from."""
