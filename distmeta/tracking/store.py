"""MLflow store addresses: defaults, reachability, artifact locations. Only the learner's process
talks to MLflow; shard actors return metric dicts."""

from __future__ import annotations

import fcntl
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from distmeta.errors import UserError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # closed networks: never phone home
# MLflow retries a failed request 7 times with doubling waits (minutes); metrics have their own
# queue and retries (tracking/outbox.py), so a request gives up sooner and the queue tries again
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def resolve_uri(uri: str, workdir: str | os.PathLike | None = None) -> str:
    """Empty means a sqlite store in the working directory; relative sqlite paths become absolute
    so the same store is found from any process or later working directory."""
    base = Path(workdir or os.getcwd()).resolve()
    if not uri:
        return f"sqlite:///{base / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///') :]).resolve()}"
    if not urlparse(uri).scheme:  # a bare folder: MLflow's file store
        return str((base / uri).resolve())
    return uri


def artifact_location(uri: str) -> str | None:
    """For a local sqlite store, artifacts go to ``mlartifacts/`` beside the database; a tracking
    server decides for itself (``None``)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    return None


def check_reachable(uri: str, timeout_s: float = 5.0, create: bool = True) -> None:
    """Raise :class:`UserError` before any work when the store cannot be used: a server that does
    not answer, a scheme MLflow does not know or lacks the driver for, a folder (file) store, a
    database that cannot be opened. A new sqlite store is created here, one process at a time
    (:func:`_creating`), unless ``create`` is false: then a missing one is an error."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        _check_server(uri, timeout_s)
        return
    if parsed.scheme == "sqlite":
        path = Path(uri[len("sqlite:///") :])
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise UserError(f"tracking.uri={uri}: folder {path.parent} does not exist or is not writable")
        if not create and not path.is_file():
            raise UserError(f"tracking.uri={uri}: no MLflow store at {path} (was it moved or deleted?)")
        with _creating(path.parent):
            _open(uri)
        return
    if not parsed.scheme or parsed.scheme == "file":
        raise UserError(
            f"tracking.uri={uri} is a folder, MLflow's file store, which MLflow {_mlflow_version()} no longer opens "
            "by default; use a sqlite store (tracking.uri=sqlite:///PATH/mlflow.db, or leave it empty for "
            "./mlflow.db) or a tracking server (http://HOST:PORT)"
        )
    _open(uri)


def _check_server(uri: str, timeout_s: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            if resp.status == 200:
                return
            problem = f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise UserError(
        f"tracking.uri={uri} is not reachable ({problem}); start the server "
        f"(mlflow server --host 127.0.0.1 --port PORT --backend-store-uri sqlite:///mlflow.db) "
        "or set tracking.uri to a local store"
    )


def _open(uri: str) -> None:
    """Open the store as MLflow will (for a new database: create its tables)."""
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except ImportError as exc:  # e.g. postgresql:// without psycopg2
        raise UserError(f"tracking.uri={uri} needs a database driver that is not installed ({exc.name or exc})") from None
    except Exception as exc:  # an unknown scheme, a database that refuses: MLflow's own words, one line
        raise UserError(f"tracking.uri={uri} cannot be used as an MLflow store: {_first_line(exc)}") from None


def check_run(uri: str, run_id: str, owner: str) -> None:
    """The run ``owner`` (a checkpoint) belongs to is in the store at ``uri``."""
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).get_run(run_id)
    except Exception as exc:
        raise UserError(
            f"{owner} belongs to MLflow run {run_id}, which the store at {uri} does not hold ({_first_line(exc)}); "
            "point tracking.uri at the store the run was logged to"
        ) from None


@contextmanager
def _creating(folder: Path) -> Iterator[None]:
    """An exclusive lock on the store's folder while a store is opened: two runs started at once on
    a new sqlite file would both create its tables, and the second one fails. A lock on the folder
    itself leaves no file behind; it is only held for the opening."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _mlflow_version() -> str:
    import mlflow

    return mlflow.__version__
