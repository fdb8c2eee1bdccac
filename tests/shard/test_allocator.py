"""The shards' malloc settings keep freed memory for the next task: a repeated allocation pattern
(a task's activations, freed at its end) stops faulting pages in again."""

import platform
import subprocess
import sys

import pytest

from distmeta.shard.allocator import retain_freed_memory

PATTERN = """
import ctypes, resource, sys, torch
from distmeta.shard.allocator import M_MMAP_THRESHOLD, retain_freed_memory
# glibc's starting mmap threshold, frozen: its dynamic threshold makes the default erratic to test
assert ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1
if sys.argv[1] == "on":
    assert retain_freed_memory()
def task():  # 64 MiB of activations at once, freed together
    return [torch.ones(4 << 20) for _ in range(4)]
for _ in range(3):  # warm-up: the heap grows to the pattern's size
    task()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    task()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "glibc" not in " ".join(platform.libc_ver()), reason="glibc only"
)


def _faults(setting: str) -> int:
    out = subprocess.run([sys.executable, "-c", PATTERN, setting], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@glibc
def test_freed_memory_is_kept_for_the_next_task():
    default, retained = _faults("off"), _faults("on")
    task_pages = 64 * 2**20 // 4096
    assert default >= 5 * task_pages, default  # mapped afresh, and faulted in, for every task
    assert retained < task_pages / 16, retained


@glibc
def test_the_settings_apply_once_and_report_it():
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True  # idempotent


WORKER = """
import sys
import distmeta
from distmeta.recipe import Recipe
from distmeta.shard import allocator
from distmeta.shard.worker import ShardWorker
cfg = distmeta.load_config(sys.argv[1], ["cluster.num_shards=0", "algorithm.compile=false",
                                         "cluster.retain_freed_memory=" + sys.argv[2]])
ShardWorker(0, Recipe.from_config(cfg).worker_spec())
print(allocator._applied)
"""


@glibc
@pytest.mark.parametrize("setting", ["true", "false"])
def test_the_worker_applies_them_as_configured(setting):
    from tests.conftest import SINE_CONFIG

    out = subprocess.run([sys.executable, "-c", WORKER, str(SINE_CONFIG), setting], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == ("True" if setting == "true" else "False")
