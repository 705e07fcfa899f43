#!/usr/bin/env bash
# Run the e2e admission suite in a throwaway kind cluster.
#
#   e2e/kind.sh [helm]  [-- PYTEST_ARGS...]   build the image, load it into kind, install the chart,
#                                             run E2E_MODE=helm pytest e2e against it
#   e2e/kind.sh local   [-- PYTEST_ARGS...]   E2E_MODE=local pytest e2e: the chart's objects with
#                                             webhook.url, `vllm-fit serve` on this host (kind's API
#                                             server calls back through the docker network gateway)
#   e2e/kind.sh --delete                      delete the cluster and its kubeconfig
#
# The cluster is kept between runs (re-running reuses it); --delete tears it down.
#
# Environment:
#   KIND_CLUSTER_NAME      cluster name (default vllm-fit-e2e; kind reads it too)
#   E2E_KUBECONFIG         where to write the cluster's kubeconfig
#                          (default ~/.cache/vllm-fit/kind-<cluster>.kubeconfig; your ~/.kube/config
#                          is never touched)
#   E2E_IMAGE              image to build and load (default vllm-fit:e2e)
#   E2E_WEBHOOK_NAMESPACE  namespace of the Helm release (default vllm-fit)
#   E2E_RELEASE            Helm release name (default vllm-fit)
#   KIND_NODE_IMAGE        kindest/node image to use (default: kind's own)
#   VLLM_FIT_DEV_HOST      local mode: the address of this host as the kind node sees it
#                          (default: the gateway of the `kind` docker network, e.g. 172.18.0.1)
#   PYTHON                 Python with pytest (and, for local mode, vllm-fit) installed
#                          (default .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER_NAME:-vllm-fit-e2e}
KUBECONFIG_FILE=${E2E_KUBECONFIG:-${XDG_CACHE_HOME:-$HOME/.cache}/vllm-fit/kind-$CLUSTER.kubeconfig}
IMAGE=${E2E_IMAGE:-vllm-fit:e2e}
NAMESPACE=${E2E_WEBHOOK_NAMESPACE:-vllm-fit}
RELEASE=${E2E_RELEASE:-vllm-fit}

die() { echo "e2e/kind.sh: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

need() {
  local tool=$1 hint=$2
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found on PATH: $hint"
}

bounded() {  # bounded SECONDS CMD...: run CMD with a time limit when coreutils timeout exists
  local seconds=$1; shift
  if command -v timeout >/dev/null 2>&1; then timeout "$seconds" "$@"; else "$@"; fi
}

need_docker() {
  need docker "install Docker (https://docs.docker.com/engine/install/)"
  bounded 30 docker info >/dev/null 2>&1 \
    || die "docker is installed but its daemon does not answer (is it running? may this user use it?)"
}

python_for_tests() {
  local py=${PYTHON:-}
  if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
  fi
  command -v "$py" >/dev/null 2>&1 || die "no Python at '$py' (set PYTHON)"
  "$py" -c 'import pytest, yaml' 2>/dev/null \
    || die "$py lacks pytest/PyYAML: run bash tests/run once, or pip install -e '.[webhook,test]'"
  echo "$py"
}

ensure_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "reusing kind cluster $CLUSTER"
  else
    say "creating kind cluster $CLUSTER"
    local image_args=()
    if [ -n "${KIND_NODE_IMAGE:-}" ]; then image_args=(--image "$KIND_NODE_IMAGE"); fi
    mkdir -p "$(dirname "$KUBECONFIG_FILE")"
    kind create cluster --name "$CLUSTER" ${image_args[@]+"${image_args[@]}"} --wait 180s --kubeconfig "$KUBECONFIG_FILE"
  fi
  mkdir -p "$(dirname "$KUBECONFIG_FILE")"
  (umask 077 && kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE")
  export KUBECONFIG=$KUBECONFIG_FILE
  kubectl --request-timeout=20s cluster-info >/dev/null \
    || die "kind cluster $CLUSTER does not answer (KUBECONFIG=$KUBECONFIG_FILE)"
  say "KUBECONFIG=$KUBECONFIG_FILE"
}

kind_gateway() {  # the IPv4 gateway of the `kind` docker network: this host as the kind node sees it
  local gw
  for gw in $(docker network inspect kind --format '{{range .IPAM.Config}}{{.Gateway}} {{end}}'); do
    case $gw in *.*) echo "$gw"; return 0 ;; esac
  done
  return 1
}

MODE=helm
DELETE=0
PYTEST_ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    helm|local) MODE=$1 ;;
    --delete) DELETE=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; PYTEST_ARGS=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

if [ "$DELETE" = 1 ]; then
  need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
  say "deleting kind cluster $CLUSTER"
  kind delete cluster --name "$CLUSTER"
  rm -f "$KUBECONFIG_FILE"
  exit 0
fi

need_docker
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
if [ "$MODE" = helm ]; then
  need helm "install helm (https://helm.sh/docs/intro/install/), or run bash tests/run once (it puts helm in .venv/bin)"
  [ -f Dockerfile ] || die "no Dockerfile at the repository root: cannot build $IMAGE"
  [ -d charts/vllm-fit ] || die "no chart at charts/vllm-fit"
fi
PY=$(python_for_tests)
if [ "$MODE" = local ]; then
  "$PY" -c 'import vllm_fit.admission.operator, pytest' 2>/dev/null \
    || die "$PY cannot import vllm_fit and pytest: pip install -e '.[test]' (or bash tests/run)"
  need helm "install helm (https://helm.sh/docs/intro/install/), or run bash tests/run once (it puts helm in .venv/bin)"
fi

ensure_cluster

if [ "$MODE" = helm ]; then
  say "building $IMAGE"
  docker build -t "$IMAGE" .
  say "loading $IMAGE into kind cluster $CLUSTER"
  kind load docker-image "$IMAGE" --name "$CLUSTER"
  say "installing the chart (release $RELEASE in namespace $NAMESPACE)"
  upgrade=0
  if helm status "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1; then upgrade=1; fi
  # hub.enabled=false: the suite uses bundled models only; no network from the cluster needed.
  helm upgrade --install "$RELEASE" charts/vllm-fit -n "$NAMESPACE" --create-namespace \
    --set "image.repository=${IMAGE%:*},image.tag=${IMAGE##*:},image.pullPolicy=IfNotPresent" \
    --set hub.enabled=false \
    --wait --timeout 5m
  kubectl --request-timeout=200s -n "$NAMESPACE" wait --for=condition=Available deployment --all --timeout=180s
  if [ "$upgrade" = 1 ]; then
    # A rebuilt image under the same tag is not picked up by `helm upgrade` alone.
    kubectl --request-timeout=20s -n "$NAMESPACE" rollout restart deployment -l "app.kubernetes.io/instance=$RELEASE"
  fi
  for deployment in $(kubectl --request-timeout=20s -n "$NAMESPACE" get deployment \
                        -l "app.kubernetes.io/instance=$RELEASE" -o name); do
    kubectl --request-timeout=200s -n "$NAMESPACE" rollout status "$deployment" --timeout=180s
  done
  say "running E2E_MODE=helm pytest e2e"
  exec env E2E_MODE=helm E2E_WEBHOOK_NAMESPACE="$NAMESPACE" KUBECONFIG="$KUBECONFIG_FILE" \
    "$PY" -m pytest e2e -rs ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
fi

if [ -z "${VLLM_FIT_DEV_HOST:-}" ]; then
  VLLM_FIT_DEV_HOST=$(kind_gateway) \
    || die "cannot find the gateway of the 'kind' docker network; set VLLM_FIT_DEV_HOST to this host's address as the kind node sees it"
fi
say "running E2E_MODE=local pytest e2e (VLLM_FIT_DEV_HOST=$VLLM_FIT_DEV_HOST)"
exec env E2E_MODE=local VLLM_FIT_DEV_HOST="$VLLM_FIT_DEV_HOST" KUBECONFIG="$KUBECONFIG_FILE" \
  "$PY" -m pytest e2e -rs ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
