"""Starting or joining Ray (embedded by default), with clear errors for addresses that do not answer."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlparse

from distmeta import interrupts
from distmeta.errors import UserError
from distmeta.logs import quieter

# Closed networks and privacy: Ray must never try to report usage.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


SHUTDOWN_S = 10.0
"""How long closing the actors or Ray's shutdown may take before the run goes on without it."""
STOPPING_SHUTDOWN_S = 3.0
"""The same after a signal, which may have reached Ray's own processes too (sent to the process
group): they are dying, and each call would wait a minute for them. A healthy close takes well
under this (docs/reliability.md); past it, the process exits without them."""


@contextmanager
def session(address: str, num_shards: int, dashboard: bool = False) -> Iterator[None]:
    """:func:`ray_session` with the learner at one torch thread meanwhile (:func:`learner_threads`)."""
    with ray_session(address, num_shards, dashboard), learner_threads(num_shards):
        yield


_abandoned = False


def abandoned() -> bool:
    """Ray's processes died under this one and it was not shut down: the process should exit
    without Ray's exit hook, which would wait a minute for them (``distmeta.cli.run`` does)."""
    return _abandoned


@contextmanager
def ray_session(address: str, num_shards: int, dashboard: bool = False) -> Iterator[None]:
    """Where a run's shard actors live: with any, Ray started in-process (with its ``dashboard``
    if asked) or joined, and shut down after if started here."""
    global _abandoned
    _abandoned = False
    started = start_ray(address, dashboard=dashboard) if num_shards > 0 else False
    session_dir = _session_dir() if started else None
    failed = True
    try:
        yield
        failed = False
    finally:
        if started and ray_alive() and not _abandoned:
            _bounded(_ray_shutdown, _teardown_s(), "Ray's shutdown")
        if started and (_abandoned or not ray_alive()):  # its processes are gone or going: the rest go too
            _abandoned = True
            _kill_own_node()
        if session_dir is not None:
            _clean_session(session_dir, keep=failed)


@contextmanager
def releasing(group) -> Iterator:
    """``group.close()`` at the end, unless Ray's own processes are gone (nothing is left to
    release, and Ray's calls would wait for them)."""
    try:
        yield group
    finally:
        if ray_alive():
            _bounded(group.close, _teardown_s(), "closing the shard actors")


def _teardown_s() -> float:
    return STOPPING_SHUTDOWN_S if interrupts.requested() else SHUTDOWN_S


def ray_alive() -> bool:
    """Whether Ray's own processes still run, as far as this process can tell: the GCS and raylet
    it started (a signal to the whole process group reaches them too); a joined cluster's, it
    cannot see and assumes they do."""
    node = _own_node()
    if node is None:
        return True
    procs = node.all_processes
    return all(p.process.poll() is None for kind in ("gcs_server", "raylet") for p in procs.get(kind, []))


def _own_node():
    """The Ray node this process started, if any (Ray-internal: there is no public handle on it)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None) if ray.is_initialized() else None
    return node if node is not None and node.head else None


def _kill_own_node() -> None:
    node = _own_node()
    if node is not None:
        node.kill_all_processes(check_alive=False, allow_graceful=False)


def _session_dir() -> Path | None:
    node = _own_node()
    return Path(node.get_session_dir_path()) if node is not None else None


def _clean_session(folder: Path, keep: bool) -> None:
    """Ray's session folder of an in-process run (its logs, sockets, spilled objects) goes with
    the run; after a failure it stays, and the log says where."""
    if keep:
        logging.getLogger(__name__).warning("Ray's logs of this run are kept in %s", folder / "logs")
        return
    deadline = time.monotonic() + 3.0
    while folder.exists() and time.monotonic() < deadline:  # Ray's last processes may still be writing logs
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            time.sleep(0.2)
    latest = folder.parent / "session_latest"
    if latest.is_symlink() and not latest.exists():  # it pointed at the folder just removed
        latest.unlink(missing_ok=True)


def _ray_shutdown() -> None:
    import ray

    ray.shutdown()


@contextmanager
def learner_threads(num_shards: int) -> Iterator[None]:
    """With shard actors, the learner's process at one torch thread: its own maths is tiny, and
    idle intra-op threads would only compete with the shards."""
    import torch

    threads = torch.get_num_threads()
    if num_shards > 0:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _bounded(action, timeout_s: float, what: str) -> None:
    """``action()`` given ``timeout_s``: a Ray call whose peers died can wait a minute for them."""
    global _abandoned
    import threading

    worker = threading.Thread(target=action, name="distmeta-teardown", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        _abandoned = True
        logging.getLogger(__name__).warning("%s did not end within %.0f s; going on without it", what, timeout_s)


def start_ray(address: str, timeout_s: float = 5.0, dashboard: bool = False) -> bool:
    """Join ``address`` (empty: ``RAY_ADDRESS`` when set, as in a Ray job) or start Ray in this
    process, with its ``dashboard`` (on 127.0.0.1, its address printed) if asked. Returns whether
    Ray was initialised here (the caller shuts it down then); an already initialised Ray is reused
    as it is."""
    import ray

    shown = address
    if address == "auto":
        address = _auto_address()
        shown = f"auto ({address})"
    if address:
        _check_tcp(address, timeout_s, shown)
    if ray.is_initialized():
        return False
    if not address and os.environ.get("RAY_ADDRESS"):
        # a Ray job's driver (distmeta submit): the job server points it at its own cluster
        address = os.environ["RAY_ADDRESS"]
    if not address:
        # Ray lowers its workers to nice 15 so drivers stay responsive; here the shard actors do
        # the work while the learner mostly waits on them, and on a small machine the lowered
        # priority starved them (docs/performance.md). Started in-process only; a cluster keeps its own.
        os.environ.setdefault("RAY_worker_niceness", "0")
    # In-process, Ray's node is this machine alone: its addresses are loopback, and what it writes
    # (the session folder, a new ~/.ray/auth_token) is readable by this user only.
    local = {} if address else {"dashboard_host": "127.0.0.1"}
    umask = os.umask(0o077) if not address else None
    try:
        # In-process Ray keeps its token authentication on (docs/reliability.md); it warns so on every start.
        quiet = quieter("ray._private.authentication.authentication_token_setup") if not address else nullcontext()
        with quiet:
            context = ray.init(
                address=address or "local",  # "local": never a cluster found by chance on this machine
                include_dashboard=dashboard if not address else None,
                logging_level=logging.WARNING,
                log_to_driver=True,
                **local,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot connect to the Ray cluster at cluster.address={address}: {exc}") from None
    finally:
        if umask is not None:
            os.umask(umask)
    if dashboard and not address and context.dashboard_url:
        print(f"Ray dashboard: http://{context.dashboard_url}{_sign_in()}", flush=True)
    return True


def _sign_in() -> str:
    """How a browser gets into the dashboard: with Ray's token authentication on (in-process Ray's
    default since 2.52 where no mode is set), it asks for the token."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled  # Ray-internal
    except ImportError:  # a Ray before 2.52: no token authentication
        return ""
    return " (it asks for the token `ray get-auth-token` prints)" if is_token_auth_enabled() else ""


def _auto_address() -> str:
    """``auto``: ``RAY_ADDRESS`` when set, else the cluster the latest ``ray start`` on this machine
    recorded. Unlike Ray's own ``auto``, never any Ray process found running here: that may be
    another run's in-process Ray, which takes its actors with it when it ends."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    from ray._common.utils import get_ray_address_file  # Ray-internal: where `ray start` records it

    recorded = Path(get_ray_address_file(None))
    address = recorded.read_text().strip() if recorded.is_file() else ""
    if not address:
        raise UserError(
            f"cluster.address=auto found no cluster: RAY_ADDRESS is not set and no `ray start --head` on this "
            f"machine recorded one ({recorded} does not exist); start one, give its host:port, or leave "
            "cluster.address empty to run Ray in-process"
        )
    return address


def _check_tcp(address: str, timeout_s: float, shown: str) -> None:
    """A TCP probe of ``host:port`` (or ``ray://host:port``) so a wrong address fails in seconds."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:  # a port that is not a number
        host, port = None, None
    if not host or not port:
        raise UserError(f"cluster.address={shown} is not of the form host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise UserError(
            f"cluster.address={shown} is unreachable ({exc.strerror or exc}); start the head node with "
            "`ray start --head`, check the address, or leave cluster.address empty to run Ray in-process"
        ) from None
