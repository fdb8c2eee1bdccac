# distmeta with its pinned stack. Build:  docker build -t distmeta:0.1.0 .
# The Python minor version matches pyproject's range and the lock (requirements/constraints.txt).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true
WORKDIR /opt/distmeta

COPY requirements/constraints.txt requirements/constraints.txt
# The locked torch; TORCH_INDEX picks a wheel index (a CPU-only or a CUDA build) instead of the default.
ARG TORCH_INDEX=""
RUN pip install --no-cache-dir ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==2.13.0" \
 && pip install --no-cache-dir -c requirements/constraints.txt "ray[default]" pytorch-lightning mlflow omegaconf matplotlib

COPY pyproject.toml README.md ./
COPY distmeta distmeta
COPY configs configs
RUN pip install --no-cache-dir --no-deps -e .

ENTRYPOINT ["distmeta"]
CMD ["--help"]
