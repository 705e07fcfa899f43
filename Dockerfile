# syntax=docker/dockerfile:1
# vllm-fit admission webhook image: `docker build -t vllm-fit:0.1.0 .`
# Stage 1 builds the wheel (with the bundled profiles inside) and installs it with its
# dependencies (webhook and Hub client included) into /opt/venv; stage 2 is the slim runtime with that venv only.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY profiles ./profiles
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --only-binary=:all: \
      "$(ls /wheels/vllm_fit-*.whl)" \
 && /opt/venv/bin/vllm-fit plan Qwen/Qwen3-0.6B --gpu L4 >/dev/null \
 && /opt/venv/bin/vllm-fit serve --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vllm-fit" \
      org.opencontainers.image.description="Admission webhook: will this vllm serve launch fit its GPUs?" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VLLM_FIT_CACHE_DIR=/var/cache/vllm-fit \
    HF_HOME=/var/cache/vllm-fit/huggingface
COPY --from=build /opt/venv /opt/venv
RUN groupadd --system --gid 65532 vllm-fit \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin vllm-fit \
 && mkdir -p /var/cache/vllm-fit \
 && chown 65532:65532 /var/cache/vllm-fit
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9443 8080
ENTRYPOINT ["vllm-fit", "serve"]
