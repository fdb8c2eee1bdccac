"""Starting or joining Ray (embedded by default), with clear errors for addresses that do not answer."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from distmeta.errors import UserError

# Closed networks and privacy: Ray must never try to report usage.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@contextmanager
def session(address: str, num_shards: int) -> Iterator[None]:
    """Where a run's shards run: with shard actors, Ray started in-process or joined (and shut
    down after, if started here), and the learner's process at one torch thread meanwhile (its
    own maths is tiny; idle intra-op threads would only compete with the shards)."""
    import torch

    started = start_ray(address) if num_shards > 0 else False
    threads = torch.get_num_threads()
    if num_shards > 0:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if started:
            import ray

            ray.shutdown()


def start_ray(address: str, timeout_s: float = 5.0) -> bool:
    """Join ``address`` (empty: ``RAY_ADDRESS`` when set, as in a Ray job) or start Ray in this
    process. Returns whether Ray was initialised here (the caller shuts it down then); an already
    initialised Ray is reused as it is."""
    import ray

    if address and address != "auto":
        _check_tcp(address, timeout_s)
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
    try:
        ray.init(
            address=address or None,
            include_dashboard=False if not address else None,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot connect to the Ray cluster at cluster.address={address}: {exc}") from None
    return True


def _check_tcp(address: str, timeout_s: float) -> None:
    """A TCP probe of ``host:port`` (or ``ray://host:port``) so a wrong address fails in seconds."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise UserError(f"cluster.address={address} is not of the form host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise UserError(
            f"cluster.address={address} is unreachable ({exc.strerror or exc}); start the head node with "
            "`ray start --head`, check the address, or leave cluster.address empty to run Ray in-process"
        ) from None
