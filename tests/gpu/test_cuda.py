"""On a CUDA device: every algorithm's meta-gradient equals the CPU one, and the memory controls
lower the peak memory they promise to. Skipped where there is no GPU."""

import pytest
import torch

from distmeta.algorithms import build, meta_grad
from distmeta.bench.memory import measure
from distmeta.models import ModelSpec
from distmeta.tasks import TRAIN, EpisodeFamily, GlyphSource

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("name", ["maml", "fomaml", "reptile", "anil", "metasgd", "protonet"])
def test_cuda_meta_gradient_equals_cpu(name):
    algo = build(name, loss="cross_entropy", steps=2, lr=0.1, ways=5)
    torch.manual_seed(0)
    net = algo.meta_model(ModelSpec("conv4", (1, 28, 28), 0 if name == "protonet" else 5, filters=16).build()).double()
    params = {k: p.detach() for k, p in net.named_parameters()}
    family = EpisodeFamily("glyphs", ways=5, shots=1, query=3).with_data(GlyphSource().load("val"))
    batch = family.sample(0, TRAIN, 0, range(4), dtype=torch.float64)
    cpu = meta_grad(algo, net, params, {}, batch).grads
    gpu_net = net.to("cuda")
    gpu = meta_grad(algo, gpu_net, {k: v.cuda() for k, v in params.items()}, {}, batch.to("cuda")).grads
    for k in cpu:
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-7, atol=1e-9)


def test_memory_controls_lower_the_peak_and_keep_the_gradient():
    """float64, so the exact-gradient settings can be compared tightly (float32 convolutions may
    run in TF32 on the GPU, and 5 second-order steps amplify that)."""
    rows = {
        s: measure(s, "cuda", tasks=8, steps=5, filters=32, dtype=torch.float64)
        for s in ("second order", "first_order", "checkpoint_inner", "chunk_size=2")
    }
    base = rows["second order"]
    for setting in ("first_order", "checkpoint_inner", "chunk_size=2"):
        assert rows[setting]["peak_mib"] < base["peak_mib"], (setting, rows)
    for setting in ("checkpoint_inner", "chunk_size=2"):  # exact second-order gradient, other memory
        assert rows[setting]["grad_norm"] == pytest.approx(base["grad_norm"], rel=1e-8)


@pytest.mark.parametrize("aggregation", ["learner", "allreduce"])
def test_two_shards_sharing_one_gpu_train_like_the_cpu(aggregation, tmp_path, monkeypatch):
    """A few meta-steps with 2 Ray shard actors on one GPU (gpus_per_shard=0.5) against the same
    run on CPU actors, in both aggregation modes (all-reduce: GPU replicas, reduced over gloo in
    host memory). Float32 on both, so the tolerance allows for GPU kernels' summation order."""
    pytest.importorskip("ray")
    import ray

    import distmeta
    from tests.conftest import SINE_CONFIG
    from tests.integration.helpers import SMALL, params_of, rel_diff

    monkeypatch.chdir(tmp_path)
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False)
    try:
        common = [*SMALL, "trainer.max_steps=10", "cluster.num_shards=2", "algorithm.meta_lr=0.001", "evaluation.num_tasks=10",
                  f"cluster.aggregation={aggregation}"]  # fmt: skip
        gpu = distmeta.train(
            distmeta.load_config(SINE_CONFIG, [*common, "cluster.gpus_per_shard=0.5", "cluster.cpus_per_shard=1"])
        )
        cpu = distmeta.train(distmeta.load_config(SINE_CONFIG, common))
    finally:
        ray.shutdown()
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(gpu.tracking_uri).get_run(gpu.run_id).data.tags
    assert all("cuda" in tags[f"shard.{k}.worker"] for k in range(2)), tags
    if aggregation == "allreduce":
        assert tags["distmeta.collective"] == "gloo", "two actors on one GPU: NCCL cannot join them"
    assert tags["shard.0.gpus"] == tags["shard.1.gpus"], "both shards on the one GPU"
    diff = rel_diff(params_of(gpu), params_of(cpu))
    print(f"2 shards on one CUDA GPU vs CPU after 10 steps, {aggregation}: rel diff {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL joins one GPU per shard actor: needs 2 GPUs")
def test_two_shards_on_their_own_gpus_reduce_over_nccl_and_train_like_the_cpu(tmp_path, monkeypatch):
    """All-reduce mode with one whole GPU per shard actor: ``auto`` picks NCCL, the rows are
    reduced GPU to GPU, and the run ends where the same run on CPU actors (gloo) does."""
    import ray

    import distmeta
    from tests.conftest import SINE_CONFIG
    from tests.integration.helpers import SMALL, params_of, rel_diff

    monkeypatch.chdir(tmp_path)
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False)
    try:
        common = [*SMALL, "trainer.max_steps=10", "cluster.num_shards=2", "algorithm.meta_lr=0.001", "evaluation.num_tasks=10",
                  "cluster.aggregation=allreduce"]  # fmt: skip
        gpu = distmeta.train(distmeta.load_config(SINE_CONFIG, [*common, "cluster.gpus_per_shard=1"]))
        cpu = distmeta.train(distmeta.load_config(SINE_CONFIG, common))
    finally:
        ray.shutdown()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(gpu.tracking_uri)
    assert client.get_run(gpu.run_id).data.tags["distmeta.collective"] == "nccl"
    assert client.get_run(cpu.run_id).data.tags["distmeta.collective"] == "gloo"
    assert rel_diff(params_of(gpu), params_of(cpu)) < 1e-4
