"""MLflow store addresses: defaults, reachability, artifact locations. Only the learner's process
talks to MLflow; shard actors return metric dicts."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
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
    if "://" not in uri:  # a bare folder: MLflow's file store
        return str((base / uri).resolve())
    return uri


def artifact_location(uri: str) -> str | None:
    """For a local sqlite store, artifacts go to ``mlartifacts/`` beside the database; a tracking
    server decides for itself (``None``)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    return None


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`UserError` before any work when the store cannot be used."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
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
    if parsed.scheme == "sqlite":
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UserError(f"tracking.uri={uri}: folder {folder} does not exist or is not writable")
