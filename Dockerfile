# syntax=docker/dockerfile:1
# vllm-fit admission webhook image: `docker build -t vllm-fit:0.1.0 .`
#
# Stage 1 builds the wheel (with the bundled profiles inside) and installs it with its
# dependencies into /opt/venv; stage 2 is the runtime with that venv only: no pip, no compiler,
# non-root, nothing written outside the mounted cache and /tmp (runs with a read-only root).
#
# PYTHON_IMAGE is any Debian-family image whose `python3` has `venv` and `ensurepip`:
#   - the official image (default), python:3.X-slim-*;
#   - a Debian base with the packages python3, python3-venv and ca-certificates (the python3 of
#     the release: bookworm 3.11, trixie 3.13), e.g. one made with mmdebstrap: e2e/image.sh.
# Both stages use the same base, so /opt/venv's interpreter link resolves in the runtime.
#
# Behind a TLS-intercepting proxy or with a package mirror, pip's settings come in as build
# arguments and the proxy's CA bundle as a build secret, so neither lands in the image:
#   docker build --build-arg PIP_INDEX_URL=https://mirror/simple \
#     --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt .

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY profiles ./profiles
# A throwaway venv gives both kinds of base the same, current pip (Debian's python3 has none);
# the runtime venv is made without pip and filled from outside, so none ships in the image.
RUN --mount=type=secret,id=pip_cert,required=false \
    set -eu; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    python3 -m venv /opt/build \
 && /opt/build/bin/python -m pip install -q --upgrade pip \
 && /opt/build/bin/python -m pip wheel -q --no-deps --wheel-dir /wheels . \
 && python3 -m venv --without-pip /opt/venv \
 && /opt/build/bin/python -m pip --python /opt/venv/bin/python install -q --only-binary=:all: \
      "$(ls /wheels/vllm_fit-*.whl)" \
 && /opt/venv/bin/python -c 'import kopf, aiohttp, prometheus_client, huggingface_hub, cryptography' \
 && /opt/venv/bin/python -c 'import importlib, pkgutil, vllm_fit; \
      [importlib.import_module(m.name) for m in pkgutil.walk_packages(vllm_fit.__path__, "vllm_fit.") \
       if not m.name.endswith("__main__")]' \
 && /opt/venv/bin/vllm-fit plan Qwen/Qwen3-0.6B --gpu L4 >/dev/null \
 && /opt/venv/bin/vllm-fit serve --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vllm-fit" \
      org.opencontainers.image.description="Admission webhook: will this vllm serve launch fit its GPUs?" \
      org.opencontainers.image.licenses="Apache-2.0"
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the pod (pip compiled the venv's
# bytecode at install time).
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
