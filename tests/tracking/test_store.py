"""Store addresses: defaults and relative paths resolved, artifact locations, and reachability
checked before any work (a sqlite folder that cannot be written, an http server that is not there)."""

import http.server
import os
import threading
from pathlib import Path

import pytest

from distmeta.errors import UserError
from distmeta.tracking.run import make_logger
from distmeta.tracking.store import artifact_location, check_reachable, resolve_uri
from tests.conftest import free_port


def test_empty_uri_is_a_sqlite_store_in_the_working_directory(workdir):
    """No ``tracking.uri``: ``mlflow.db`` in the current folder, as an absolute sqlite URI."""
    assert resolve_uri("") == f"sqlite:///{workdir.resolve() / 'mlflow.db'}"
    assert resolve_uri("", workdir / "elsewhere") == f"sqlite:///{(workdir / 'elsewhere').resolve() / 'mlflow.db'}"


def test_relative_sqlite_path_becomes_absolute(workdir):
    """``sqlite:///runs/m.db`` is found from any later working directory."""
    expected = f"sqlite:///{workdir.resolve() / 'runs' / 'm.db'}"
    assert resolve_uri("sqlite:///runs/m.db") == expected
    assert resolve_uri("sqlite:///../up.db", workdir / "sub") == f"sqlite:///{workdir.resolve() / 'up.db'}"
    absolute = f"sqlite:///{workdir.resolve() / 'abs.db'}"  # sqlite:////... : already absolute
    assert absolute.startswith("sqlite:////") and resolve_uri(absolute, "/somewhere/else") == absolute
    assert resolve_uri(expected) == expected, "resolving twice changes nothing"


def test_bare_folder_becomes_an_absolute_path(workdir):
    """A folder (MLflow's file store) is made absolute against the working directory."""
    assert resolve_uri("mlruns") == str(workdir.resolve() / "mlruns")
    assert resolve_uri("a/../b", workdir / "w") == str((workdir / "w" / "b").resolve())
    assert resolve_uri(str(workdir / "abs")) == str(workdir.resolve() / "abs")


def test_a_bare_folder_store_works_or_is_refused_before_any_work(tmp_path, monkeypatch):
    """``tracking.uri=<folder>`` either records a run or is a UserError from ``check_reachable``
    (bad input is reported before the run starts, without a traceback)."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = resolve_uri("mlruns", tmp_path)
    try:
        check_reachable(uri)
    except UserError:
        return
    logger = make_logger(uri, "folder-store", "run")
    try:
        assert logger.run_id
    finally:
        logger.close(5.0, tmp_path)


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:5000", "https://mlflow.example.org/", "databricks://profile", "file:/tmp/mlruns", "file:///tmp/m"]
)
def test_uris_with_a_scheme_are_untouched(uri, workdir):
    assert resolve_uri(uri) == uri


def test_artifact_location_is_beside_a_sqlite_database(tmp_path):
    """sqlite: ``mlartifacts/`` next to the database, as a file URI; a server chooses for itself."""
    db = tmp_path.resolve() / "store" / "mlflow.db"
    assert artifact_location(f"sqlite:///{db}") == (db.parent / "mlartifacts").as_uri()
    assert artifact_location(resolve_uri("", tmp_path)).startswith("file:///")
    assert artifact_location("http://127.0.0.1:5000") is None


def test_sqlite_store_in_a_writable_folder_passes(tmp_path):
    check_reachable(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")


def test_sqlite_store_in_a_missing_folder_is_a_user_error(tmp_path):
    missing = tmp_path.resolve() / "no" / "such" / "folder"
    with pytest.raises(UserError, match="does not exist or is not writable") as info:
        check_reachable(f"sqlite:///{missing / 'mlflow.db'}")
    assert str(missing) in str(info.value)


def test_sqlite_store_whose_folder_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError):
        check_reachable(f"sqlite:///{tmp_path.resolve() / 'file' / 'mlflow.db'}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder: it cannot be made unwritable by its mode")
def test_sqlite_store_in_an_unwritable_folder_is_a_user_error(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            check_reachable(f"sqlite:///{folder.resolve() / 'mlflow.db'}")
    finally:
        folder.chmod(0o700)


def test_sqlite_store_on_a_read_only_mount_is_a_user_error():
    """A read-only file system is refused even for root (``access`` reports it)."""
    folder = next((Path(p) for p in ("/proc/sys", "/sys") if Path(p).is_dir() and not os.access(p, os.W_OK)), None)
    if folder is None:
        pytest.skip("no read-only folder on this machine")
    with pytest.raises(UserError, match="not writable"):
        check_reachable(f"sqlite:///{folder / 'mlflow.db'}")


def test_http_uri_where_nothing_listens_is_a_user_error():
    """A closed localhost port: a UserError naming the URI and how to start a server, quickly."""
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match="is not reachable") as info:
        check_reachable(uri, timeout_s=5)
    assert uri in str(info.value) and "mlflow server" in str(info.value)


class _Unhealthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_server_that_is_not_healthy_is_a_user_error():
    """Something answers on the port, but ``/health`` is not 200: refused with the HTTP status."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Unhealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(UserError, match="HTTP 503"):
            check_reachable(f"http://127.0.0.1:{server.server_port}", timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.slow  # starts an mlflow server (tens of seconds on a small machine)
def test_a_running_mlflow_server_passes(mlflow_server):
    check_reachable(mlflow_server)
    check_reachable(mlflow_server + "/")
