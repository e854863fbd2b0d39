# GPU worker image: the dataworth code at /opt/dataworth and a CUDA build of torch.
#   docker build -f infra/worker.Dockerfile -t dataworth-worker:latest .
# Flow runs start in /opt/dataworth (prefect.yaml's pull step; `dataworth deploy --source /opt/dataworth`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DATAWORTH_SOURCE=/opt/dataworth \
    DATAWORTH_SHARD_DISPATCH=pool

RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/dataworth
# The CUDA wheel of torch (PyPI's default build on Linux x86_64), in its own layer.
RUN pip install 'torch>=2.4,<=2.14.1'
COPY pyproject.toml README.md ./
COPY valuation ./valuation
COPY storage ./storage
COPY ledger ./ledger
COPY flows ./flows
COPY infra ./infra
COPY prefect.yaml ./
RUN pip install -e . -c infra/constraints.txt

CMD ["prefect", "worker", "start", "--pool", "dataworth", "--type", "process"]
