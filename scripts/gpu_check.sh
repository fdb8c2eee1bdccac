#!/usr/bin/env bash
# GPU check on one CUDA GPU (each step has its own timeout: 17 minutes in all at most; 178 s on
# an H200 before --scaling was added): the GPU tests, then the conv4, sine and ResNet-12
# meta-steps on the GPU against the per-task loop baseline on the same GPU, and ResNet-12's
# memory per task. Needs torch with CUDA and pytest;
# nothing else (no Ray, MLflow or Lightning), so it runs on a bare GPU machine with the repo copied.
# Where the full stack is installed (make install), it also runs `distmeta bench` and `--scaling` on the GPU.
#
#   scripts/gpu_check.sh [OUT_DIR]     # reports land in OUT_DIR (default: gpu_check_out)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check_out}"
mkdir -p "$out"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] && py=.venv/bin/python

"$py" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (torch %s); nothing to check" % torch.__version__)
print("gpu_check: torch %s on %s" % (torch.__version__, torch.cuda.get_device_name(0)))
PY

echo "== GPU tests"
timeout 210 "$py" -m pytest -q tests/gpu -p no:cacheprovider -o addopts="" 2>&1 | tee "$out/gpu_tests.txt"

echo "== meta-step throughput on the GPU, against the per-task loop on the same GPU"
timeout 75 "$py" -m distmeta.bench.kernels --workload conv4-5w1s --device cuda --blocks 5 --steps 5 > "$out/conv4_cuda.json"
timeout 30 "$py" -m distmeta.bench.kernels --workload sine --device cuda --blocks 5 --steps 10 > "$out/sine_cuda.json"

echo "== ResNet-12: 5w1s at 84x84 (default widths, second order); CIFAR-FS-shaped full widths (first order, ProtoNets)"
timeout 90 "$py" -m distmeta.bench.kernels --workload resnet12-84-5w1s --device cuda --blocks 3 --steps 3 > "$out/resnet12_84_cuda.json"
timeout 60 "$py" -m distmeta.bench.kernels --workload resnet12-cfs-5w1s-fo --device cuda --blocks 3 --steps 5 > "$out/resnet12_cfs_fo_cuda.json"
timeout 60 "$py" -m distmeta.bench.kernels --workload protonet-resnet12-cfs-5w1s --device cuda --blocks 3 --steps 5 > "$out/protonet_resnet12_cfs_cuda.json"
echo "== ResNet-12 MAML memory per task at 84x84 (CUDA peak per setting)"
timeout 90 "$py" -m distmeta.bench.memory --model resnet12 --size 84 --tasks 2 --steps 5 --device cuda --json > "$out/resnet12_memory_cuda.json"

if "$py" -c "import ray, mlflow, pytorch_lightning, omegaconf" 2>/dev/null; then
    echo "== distmeta bench (end to end: Lightning learner, shard on the GPU)"
    timeout 120 "$py" -m distmeta bench --workload conv4-5w1s --blocks 2 --steps 2 --shards 1 --json \
        cluster.gpus_per_shard=1 > "$out/bench_conv4_cuda.json" || echo "distmeta bench failed (see above)"
    echo "== distmeta bench --scaling (both aggregation modes, 1, 2 and 4 shards sharing the GPU)"
    timeout 300 "$py" -m distmeta bench --scaling --scaling-workloads conv4-5w1s --scaling-steps 3 --json \
        --plot "$out/scaling_cuda.png" cluster.gpus_per_shard=0.25 > "$out/scaling_cuda.json" || echo "distmeta bench --scaling failed (see above)"
fi
echo "gpu_check: reports in $out/"
