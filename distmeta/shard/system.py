"""What a shard's process uses, measured where it runs and sent back with its results: the
learner logs it under ``system/shard_<k>/`` (:func:`distmeta.tracking.names.shard_system`)."""

from __future__ import annotations

import contextlib

import psutil
import torch


class ProcessProbe:
    """This process's CPU (percent of one core, since the previous sample: psutil's non-blocking
    form, so more than 100 with several threads busy) and resident memory; on a CUDA device also
    the memory its caching allocator holds and the GPU's utilisation (NVML, where installed)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.process = psutil.Process()
        self.process.cpu_percent()  # the first call starts the interval (and reads 0)

    def sample(self) -> dict[str, float]:
        out = {
            "cpu_utilization_percentage": self.process.cpu_percent(),
            "rss_megabytes": self.process.memory_info().rss / 1e6,
        }
        if self.device.type == "cuda":
            out["gpu_memory_megabytes"] = torch.cuda.memory_reserved(self.device) / 1e6
            with contextlib.suppress(Exception):  # no NVML (pynvml) or it refused: memory only
                out["gpu_utilization_percentage"] = float(torch.cuda.utilization(self.device))
        return out
