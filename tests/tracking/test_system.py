"""System metrics: MLflow's monitors for the learner's machine, a probe of each shard's process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from distmeta.shard.system import ProcessProbe
from distmeta.tracking import names
from distmeta.tracking.system import SystemMetrics

PROBED = """
import json, time
import torch
from distmeta.shard.system import ProcessProbe
probe = ProcessProbe(torch.device("cpu"))
before = probe.sample()["rss_megabytes"]
block = torch.ones(200 * 2**20 // 4)  # 200 MiB, written: resident
end = time.process_time() + 0.3
while time.process_time() < end:  # busy on one core
    pass
print(json.dumps({"before": before, "after": probe.sample(), "sum": float(block[:10].sum())}))
"""


def test_the_probe_measures_this_process_cpu_and_resident_memory():
    """In a process of its own: one that ran other tests keeps freed memory (mallopt), which a new
    tensor may reuse without growing."""
    done = subprocess.run([sys.executable, "-c", PROBED], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    after = report["after"]
    assert after["rss_megabytes"] - report["before"] > 150
    assert after["cpu_utilization_percentage"] > 30  # 0.3 s of CPU since the first sample, in well under 1 s
    assert "gpu_memory_megabytes" not in after


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_the_probe_on_cuda_reports_the_allocators_memory():
    probe = ProcessProbe(torch.device("cuda"))
    block = torch.ones(256 * 2**20 // 4, device="cuda")
    assert probe.sample()["gpu_memory_megabytes"] >= 256 * 2**20 / 1e6 and block.sum() > 0


def test_learner_metrics_are_mlflows_monitors_and_the_shards_reports_at_their_interval():
    system = SystemMetrics(every_s=0.2)
    assert system.due() and not system.due()  # the first window logs them, the next only after every_s
    out = system.sample({0: {"rss_megabytes": 12.0}, 3: {"cpu_utilization_percentage": 50.0}})
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes", "system/disk_usage_percentage",
            "system/network_receive_megabytes"} <= set(out)  # fmt: skip
    assert out[names.shard_system(0, "rss_megabytes")] == 12.0 and out["system/shard_3/cpu_utilization_percentage"] == 50.0
    time.sleep(0.25)
    assert system.due()
    assert not SystemMetrics(every_s=0).due()  # 0: never
