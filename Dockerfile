# distmeta with its pinned stack, on the Ray image whose Ray and Python versions match pyproject's
# and the lock (requirements/constraints.txt); tests/test_manifests.py checks the tag. Build:
#   docker build -t distmeta:0.1.0 .                                                    # CPU
#   docker build -t distmeta:0.1.0-gpu --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .                 # CUDA
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu
FROM ${RAY_IMAGE}

# torch.compile (algorithm.compile, on by default) builds C++ kernels on the CPU: it needs g++
USER root
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
USER ray

ENV PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true
WORKDIR /home/ray/distmeta

COPY --chown=ray:users requirements/constraints.txt requirements/constraints.txt
# The locked torch; TORCH_INDEX picks a wheel index (a CUDA build) instead of the default.
ARG TORCH_INDEX=""
RUN pip install --no-cache-dir ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==2.13.0" \
 && pip install --no-cache-dir -c requirements/constraints.txt "ray[default]" pytorch-lightning mlflow omegaconf matplotlib pillow

COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users distmeta distmeta
COPY --chown=ray:users configs configs
RUN pip install --no-cache-dir --no-deps -e .

# No ENTRYPOINT: the Ray cluster launcher and KubeRay run `ray start ...` in this image; jobs run
# `python -m distmeta train ...`.
CMD ["distmeta", "--help"]
