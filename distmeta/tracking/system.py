"""System metrics: the learner's machine by MLflow's own monitors, and the shards' processes as
they report them, logged with the training metrics (so through the outbox: an outage loses none)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping

from distmeta.tracking import names

log = logging.getLogger(__name__)


class SystemMetrics:
    """At most every ``every_s`` seconds (0: never), asked when a logging window closes.

    The learner's part is MLflow's own monitors, those its ``SystemMetricsMonitor`` runs (CPU and
    memory, disk, network, a GPU where NVML or ROCm sees one), sampled here rather than on that
    class's thread: the thread logs straight to the store (lost during an outage) and stops for
    good at the first failed call."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last = -math.inf
        self._monitors = _mlflow_monitors() if every_s > 0 else []
        if self._monitors:
            self._learner()  # psutil's CPU percentages are since the previous call: start the interval

    def due(self) -> bool:
        now = time.monotonic()
        if not self._monitors or now - self._last < self.every_s:
            return False
        self._last = now
        return True

    def sample(self, shards: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
        """The learner's machine now, and each shard's last report (``shards``: by shard index)."""
        out = self._learner()
        for k, report in shards.items():
            out.update({names.shard_system(k, key): value for key, value in report.items()})
        return out

    def _learner(self) -> dict[str, float]:
        """Each monitor's figures; one that fails (a host without what it reads) is dropped with a
        warning: system metrics never fail a step."""
        out = {}
        for monitor in list(self._monitors):
            try:
                monitor.collect_metrics()
                out.update({names.SYSTEM + k: float(v) for k, v in monitor.aggregate_metrics().items()})
                monitor.clear_metrics()
            except Exception as exc:
                log.warning("system metrics: MLflow's %s failed (%s: %s); not sampled again",
                            type(monitor).__name__, type(exc).__name__, exc)  # fmt: skip
                self._monitors.remove(monitor)
        return out


def _mlflow_monitors() -> list:
    """The monitors MLflow's ``SystemMetricsMonitor`` builds, in its order (that class itself also
    opens a client of the default store, which would create one in the working directory)."""
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor
    from mlflow.system_metrics.metrics.rocm_monitor import ROCMMonitor

    monitors = []
    for kind in (CPUMonitor, DiskMonitor, NetworkMonitor):
        try:
            monitors.append(kind())
        except Exception as exc:  # e.g. a host without network interfaces: the others still run
            log.warning("system metrics: MLflow's %s cannot start here (%s: %s)", kind.__name__, type(exc).__name__, exc)
    for gpu in (GPUMonitor, ROCMMonitor):
        with contextlib.suppress(Exception):  # no NVML / ROCm library, or no device
            monitors.append(gpu())
            break
    return monitors
