#!/usr/bin/env bash
# Build the webhook image without a Docker daemon, then run it the way the chart's pod runs it.
#
#   e2e/image.sh [--install-tools] [--keep [--reuse]]
#
# 1. base   mmdebstrap a minimal Debian $IMAGE_SUITE (default bookworm, whose python3 is 3.11)
#           with python3, python3-venv and ca-certificates, and import the tarball as
#           localhost/vllm-fit-base:$IMAGE_SUITE (no registry needed).
# 2. build  buildah (chroot isolation; overlay storage, or vfs where overlay cannot be mounted)
#           builds the repository's Dockerfile with
#           --build-arg PYTHON_IMAGE=localhost/vllm-fit-base:$IMAGE_SUITE; the host's CA bundle
#           goes in as the pip_cert build secret (for TLS-intercepting proxies; never in a layer).
# 3. run    needs a cluster whose API server and this host share a network (KUBECONFIG, or the
#           control-plane script named by VLLM_FIT_E2E_CLUSTER, started and stopped here).
#           `helm template` the chart with webhook.url=https://127.0.0.1:PORT; apply its
#           ServiceAccount (and RBAC, if any); run the image with podman under the chart's own
#           container arguments, config and security settings: the image's USER, read-only root,
#           /tmp in memory and a cache directory as the emptyDirs, all capabilities dropped, no
#           privilege escalation, the ServiceAccount's token (in a kubeconfig). Then check: the process is uid 65532 and cannot write to /; it serves
#           TLS with our CA; recorded AdmissionReviews get the expected verdicts; through the chart's
#           webhook configurations `kubectl apply --dry-run=server` of the seed's TP=1 Deployment is
#           denied by the container; SIGTERM stops it cleanly.
# The image's size (uncompressed, and as gzip layers the way a registry stores it) is printed.
#
# Exit status: 0 done, 77 skipped (a tool is missing and cannot be installed; the reason is
# printed), anything else a failure.
#
# Options:
#   --install-tools  apt-get install buildah podman mmdebstrap runc when missing (root, Debian)
#   --keep           keep the image store and work files (default: deleted at exit)
#   --reuse          skip steps 1-2 when a kept store already holds the image (with --keep)
# Environment:
#   IMAGE_SUITE          Debian release of the base (default bookworm)
#   IMAGE_APT_MIRROR     mirror(s) for mmdebstrap, space separated (default: mmdebstrap's own,
#                        which adds the updates and security suites of a stable release)
#   IMAGE_WORKDIR        work directory and image store (default ${TMPDIR:-/tmp}/vllm-fit-image-$UID)
#   IMAGE_STORAGE_DRIVER overlay or vfs (default: overlay if this user can mount it, else vfs)
#   IMAGE_TAG            tag of the built image (default localhost/vllm-fit:e2e)
#   IMAGE_PORT, IMAGE_HEALTH_PORT  host ports for the container (default: free ones)
#   IMAGE_NAMESPACE      namespace of the chart's objects (default vllm-fit-image-<unix time>)
#   PIP_CERT             CA bundle handed to pip in the build (default the system bundle)
#   KUBECONFIG, VLLM_FIT_E2E_CLUSTER (and its K8S_* variables)  the cluster for step 3
#   PYTHON               Python with PyYAML (default .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

SUITE=${IMAGE_SUITE:-bookworm}
WORK=${IMAGE_WORKDIR:-${TMPDIR:-/tmp}/vllm-fit-image-$(id -u)}
TAG=${IMAGE_TAG:-localhost/vllm-fit:e2e}
BASE=localhost/vllm-fit-base:$SUITE
PORT=${IMAGE_PORT:-}
HEALTH_PORT=${IMAGE_HEALTH_PORT:-}
NAMESPACE=${IMAGE_NAMESPACE:-vllm-fit-image-$(date +%s)}
CONTAINER=vllm-fit-image-$$
INSTALL=0
KEEP=0
REUSE=0

say() { echo "==> image.sh: $*" >&2; }
die() { echo "image.sh: FAILED: $*" >&2; exit 1; }
skip() { echo "image.sh: SKIPPED: $*" >&2; exit 77; }
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

while [ $# -gt 0 ]; do
  case $1 in
    --install-tools) INSTALL=1 ;;
    --keep) KEEP=1 ;;
    --reuse) REUSE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

T0=$SECONDS
stamp() { echo "$((SECONDS - T0))s"; }

# --- tools ----------------------------------------------------------------------------------
# runc, not crun: crun refuses hosts whose cgroups are mounted in hybrid mode (v1 controllers
# plus a cgroup2 tree), as in the sandbox this was written in.
TOOLS=(buildah podman mmdebstrap runc openssl curl)
missing() { local t; for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null 2>&1 || echo "$t"; done; }
if [ -n "$(missing)" ] && [ "$INSTALL" = 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $(missing | tr '\n' ' ')from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq buildah podman mmdebstrap runc openssl curl >/dev/null 2>&1 \
      || skip "apt-get install buildah podman mmdebstrap runc failed (no Debian archive reachable?)"
  else
    skip "missing $(missing | tr '\n' ' ')and cannot install them (needs root and apt-get)"
  fi
fi
[ -z "$(missing)" ] || skip "missing tools: $(missing | tr '\n' ' ')(run with --install-tools as root on Debian)"

PY=${PYTHON:-}
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi
"$PY" -c 'import yaml' 2>/dev/null || skip "$PY lacks PyYAML (run bash tests/run once, or set PYTHON)"
# Free ports unless given: the container shares the host's network (and so with everyone else).
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=${PORT:-$(free_port)}
HEALTH_PORT=${HEALTH_PORT:-$(free_port)}
HELM=$(command -v helm || true)
[ -n "$HELM" ] || { [ -x .venv/bin/helm ] && HELM=$REPO/.venv/bin/helm; } || true

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# One run per work directory: a second would delete the first one's store under it.
exec 9>"$WORK.lock"
flock -n 9 || die "another e2e/image.sh is using $WORK (set IMAGE_WORKDIR)"
# overlay where the kernel lets us mount it (several times faster: vfs copies the whole root
# filesystem for every layer), else vfs, which works anywhere.
overlay_works() {
  local d="$WORK/overlay-probe"
  mkdir -p "$d/lower" "$d/upper" "$d/work" "$d/merged"
  if mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/merged" 2>/dev/null; then
    umount "$d/merged"; rm -rf "$d"; return 0
  fi
  rm -rf "$d"; return 1
}
DRIVER=${IMAGE_STORAGE_DRIVER:-}
if [ -z "$DRIVER" ]; then if overlay_works; then DRIVER=overlay; else DRIVER=vfs; fi; fi
STORE=(--root "$WORK/store" --runroot "$WORK/run" --storage-driver "$DRIVER")
podman() { command podman "${STORE[@]}" "$@"; }
buildah() { command buildah "${STORE[@]}" "$@"; }

CLUSTER_STARTED=0
cleanup() {
  local status=$?
  command podman "${STORE[@]}" rm -f -t 5 "$CONTAINER" >/dev/null 2>&1 || true
  if [ -n "${KCTL:-}" ]; then
    "${KCTL[@]}" delete validatingwebhookconfiguration,mutatingwebhookconfiguration,clusterrole,clusterrolebinding \
      -l "app.kubernetes.io/instance=vllm-fit-image" --ignore-not-found >/dev/null 2>&1 || true
    "${KCTL[@]}" delete namespace "$NAMESPACE" "$NAMESPACE-check" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  if [ "$CLUSTER_STARTED" = 1 ]; then "$VLLM_FIT_E2E_CLUSTER" down --wipe >/dev/null 2>&1 || true; fi
  if [ "$KEEP" = 0 ]; then
    # A container killed mid-run can leave its /dev/shm mounted under the store.
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r umount 2>/dev/null || true
    rm -rf "$WORK" 2>/dev/null || echo "image.sh: could not delete $WORK" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- 1. base --------------------------------------------------------------------------------
build_base() {
  say "base: mmdebstrap $SUITE (minbase + python3 python3-venv ca-certificates) [$(stamp)]"
  # Docs, man pages and translations are left out as in Debian's slim images (copyright files stay).
  read -r -a mirrors <<<"${IMAGE_APT_MIRROR:-}"
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include=python3,python3-venv,ca-certificates \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --format=tar "$SUITE" "$WORK/base.tar" ${mirrors[@]+"${mirrors[@]}"} >"$WORK/mmdebstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap $SUITE (log above)"; }
  podman import --quiet --change 'CMD ["python3"]' "$WORK/base.tar" "$BASE" >/dev/null \
    || die "podman import of the base tarball"
  rm -f "$WORK/base.tar"
  say "base: $(podman image inspect --format '{{.Size}}' "$BASE") bytes uncompressed"
  say "base: $BASE, python $(timeout 120 podman "${STORE[@]}" run --rm --runtime runc --network host --ulimit nofile=1024:1024 \
    --ulimit nproc=1024:1024 "$BASE" python3 -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo '?')"
}

# --- 2. build -------------------------------------------------------------------------------
build_image() {
  say "build: buildah bud --isolation chroot --storage-driver $DRIVER -t $TAG --build-arg PYTHON_IMAGE=$BASE [$(stamp)]"
  secret=()
  CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
  if [ -s "$CERT" ]; then secret=(--secret "id=pip_cert,src=$CERT"); fi
  buildah bud --quiet --isolation chroot --network host --build-arg "PYTHON_IMAGE=$BASE" \
    ${secret[@]+"${secret[@]}"} -t "$TAG" -f Dockerfile . >"$WORK/build.log" 2>&1 \
    || { tail -n 30 "$WORK/build.log" >&2; die "buildah bud (log above)"; }
}

if [ "$REUSE" = 1 ] && podman image exists "$TAG"; then
  say "reusing $TAG from $WORK/store"
else
  build_base
  build_image
fi
size_bytes=$(podman image inspect --format '{{.Size}}' "$TAG")
# What a registry stores and a node pulls: the layers gzip-compressed.
buildah push --quiet --format oci --compression-format gzip "$TAG" "oci:$WORK/oci:e2e" >/dev/null 2>&1 \
  || die "buildah push to an OCI layout (for the compressed size)"
gzip_bytes=$("$PY" - "$WORK/oci" <<'EOF'
import json, sys, pathlib
root = pathlib.Path(sys.argv[1])
index = json.loads((root / "index.json").read_text())
blob = lambda d: root / "blobs" / d["digest"].replace(":", "/")
manifest = json.loads(blob(index["manifests"][0]).read_text())
print(sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"])
EOF
)
rm -rf "$WORK/oci"
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
say "image $TAG: $(mib "$size_bytes") uncompressed ($size_bytes bytes), $(mib "$gzip_bytes") as gzip layers ($gzip_bytes bytes)"
user=$(podman image inspect --format '{{.Config.User}}' "$TAG")
[ "$user" = "65532:65532" ] || die "image USER is '$user', expected 65532:65532"

# --- 3. run ---------------------------------------------------------------------------------
if [ -z "${KUBECONFIG:-}" ] && [ -n "${VLLM_FIT_E2E_CLUSTER:-}" ]; then
  [ -x "$VLLM_FIT_E2E_CLUSTER" ] || die "VLLM_FIT_E2E_CLUSTER=$VLLM_FIT_E2E_CLUSTER is not an executable"
  say "run: starting the control plane $VLLM_FIT_E2E_CLUSTER [$(stamp)]"
  KUBECONFIG=$("$VLLM_FIT_E2E_CLUSTER" up) || die "$VLLM_FIT_E2E_CLUSTER up"
  CLUSTER_STARTED=1
  eval "$("$VLLM_FIT_E2E_CLUSTER" env | grep '^export PATH=')"
fi
if [ -z "${KUBECONFIG:-}" ]; then
  say "SKIPPED the run: no cluster (set KUBECONFIG, or VLLM_FIT_E2E_CLUSTER to a control-plane script);"
  say "the server logs in to the API server at start (kopf), so it cannot serve without one"
  say "done: built $TAG in $(stamp)"
  exit 0
fi
export KUBECONFIG
command -v kubectl >/dev/null 2>&1 || die "kubectl not found"
[ -n "$HELM" ] || die "helm not found (bash tests/run puts it in .venv/bin)"
KCTL=(kubectl --request-timeout=20s)
"${KCTL[@]}" version >/dev/null 2>&1 || die "the cluster at KUBECONFIG=$KUBECONFIG does not answer"

mkdir -p "$WORK/tls" "$WORK/config" "$WORK/kube"
(cd "$WORK/tls" && umask 022
 openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=vllm-fit-image-ca \
   -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
 openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj /CN=vllm-fit >/dev/null 2>&1
 printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' >ext
 openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext -out tls.crt >/dev/null 2>&1
 true)

say "run: helm template the chart with webhook.url=https://127.0.0.1:$PORT [$(stamp)]"
"$HELM" template vllm-fit-image charts/vllm-fit -n "$NAMESPACE" --set replicas=1 \
  --set "webhook.url=https://127.0.0.1:$PORT" --set-file "tls.caBundle=$WORK/tls/ca.crt" \
  >"$WORK/chart.yaml" || die "helm template"
# Split the rendering: the objects to apply, the server's config file, and the container's
# args, env and security settings (so the run below is the chart's pod, not our guess of it).
"$PY" - "$WORK" <<'EOF' || die "reading the rendered chart"
import json, pathlib, sys, yaml
work = pathlib.Path(sys.argv[1])
docs = [d for d in yaml.safe_load_all((work / "chart.yaml").read_text()) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
first = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
(work / "rbac.yaml").write_text(yaml.safe_dump_all(first))
hooks = by_kind["ValidatingWebhookConfiguration"] + by_kind["MutatingWebhookConfiguration"]
(work / "webhooks.yaml").write_text(yaml.safe_dump_all(hooks))
(work / "config" / "config.yaml").write_text(by_kind["ConfigMap"][0]["data"]["config.yaml"])
pod = by_kind["Deployment"][0]["spec"]["template"]["spec"]
container = pod["containers"][0]
(work / "pod.json").write_text(json.dumps({
    "serviceAccountName": pod["serviceAccountName"],
    "args": container["args"],
    "env": {e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
    "podSecurityContext": pod.get("securityContext", {}),
    "securityContext": container.get("securityContext", {}),
}))
EOF
pod() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$WORK/pod.json" "$1"; }
[ "$(pod 'securityContext["readOnlyRootFilesystem"]')" = True ] || die "the chart no longer sets readOnlyRootFilesystem"
[ "$(pod 'podSecurityContext["runAsNonRoot"]')" = True ] || die "the chart no longer sets runAsNonRoot"
SA=$(pod serviceAccountName)
mapfile -t ARGS < <(pod '"\n".join(args)')
mapfile -t ENVS < <(pod '"\n".join(f"{k}={v}" for k, v in env.items())')

"${KCTL[@]}" create namespace "$NAMESPACE" >/dev/null
"${KCTL[@]}" apply --server-side -n "$NAMESPACE" -f "$WORK/rbac.yaml" >/dev/null || die "applying the chart's ServiceAccount/RBAC"
# The pod's identity: the chart's ServiceAccount, through a token. In a pod kopf reads the
# mounted token and calls https://kubernetes.default.svc, a name only cluster DNS resolves; on the
# host network the same token goes in a kubeconfig for the API server's own address.
token=$("${KCTL[@]}" -n "$NAMESPACE" create token "$SA" --duration=1h) || die "kubectl create token $SA"
"$PY" - "$KUBECONFIG" "$token" "$NAMESPACE" >"$WORK/kube/config" <<'EOF' || die "writing the ServiceAccount's kubeconfig"
import base64, sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
cluster = dict(next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"]))
if "certificate-authority" in cluster:  # a path on this host: inline it for the container
    with open(cluster.pop("certificate-authority"), "rb") as f:
        cluster["certificate-authority-data"] = base64.b64encode(f.read()).decode()
print(yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "sa",
    "clusters": [{"name": "cluster", "cluster": cluster}],
    "users": [{"name": "sa", "user": {"token": sys.argv[2]}}],
    "contexts": [{"name": "sa", "context": {"cluster": "cluster", "user": "sa", "namespace": sys.argv[3]}}],
}))
EOF
# As the kubelet lays out the pod's volumes under the chart's fsGroup 65532: Secrets mode 0440
# group 65532, the cache emptyDir a setgid directory of that group.
chgrp 65532 "$WORK/tls/tls.crt" "$WORK/tls/tls.key" "$WORK/kube/config"
chmod 0440 "$WORK/tls/tls.crt" "$WORK/tls/tls.key" "$WORK/kube/config"
install -d -m 2775 -g 65532 "$WORK/cache"

# The chart's securityContext, in podman's words: its USER (not overridden), read-only root,
# writable emptyDirs at /tmp (memory) and the cache, no capabilities, no privilege escalation.
env_args=(); for e in "${ENVS[@]}"; do env_args+=(-e "$e"); done
say "run: podman run $TAG as the chart's pod (read-only root, cap-drop ALL) [$(stamp)]"
# --ulimit: podman's defaults for root raise RLIMIT_NOFILE/NPROC, which needs CAP_SYS_RESOURCE.
podman run -d --name "$CONTAINER" --runtime runc --network host \
  --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
  --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,mode=1777 \
  -v "$WORK/cache:/var/cache/vllm-fit" \
  --cap-drop ALL --security-opt no-new-privileges \
  -v "$WORK/config:/etc/vllm-fit/config:ro" -v "$WORK/tls:/etc/vllm-fit/tls:ro" \
  -v "$WORK/kube:/etc/vllm-fit/kube:ro" -e KUBECONFIG=/etc/vllm-fit/kube/config -e HF_HUB_OFFLINE=1 \
  ${env_args[@]+"${env_args[@]}"} \
  "$TAG" "${ARGS[@]}" "--port=$PORT" "--health-port=$HEALTH_PORT" >/dev/null \
  || die "podman run"
logs() { podman logs "$CONTAINER" 2>&1 | tail -n 30 >&2; }

ready=0
for _ in $(seq 120); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HEALTH_PORT/readyz")" = 200 ]; then ready=1; break; fi
  [ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] || { logs; die "the container exited"; }
  sleep 0.5
done
[ "$ready" = 1 ] || { logs; die "/readyz not 200 after 60 s"; }
say "run: ready [$(stamp)]"

uid=$(podman exec "$CONTAINER" sh -c 'awk "/^Uid:/ { print \$2 }" /proc/1/status')
[ "$uid" = 65532 ] || die "the server runs as uid '$uid', not 65532"
if err=$(podman exec "$CONTAINER" sh -c 'echo x >/opt/venv/probe' 2>&1); then die "wrote to the root filesystem"; fi
case $err in *"Read-only file system"*) ;; *) die "writing to / failed, but not as read-only: $err" ;; esac
podman exec "$CONTAINER" sh -c 'echo x >/tmp/probe && echo x >/var/cache/vllm-fit/probe' \
  || die "/tmp or the cache is not writable"
say "run: uid 65532, root filesystem read-only ($err), /tmp and the cache writable"

# A recorded review each way: the seed's Llama-3.3-70B-FP8 at TP=1 on H100 (denied, with the
# numbers), and its TP=2 fix (allowed). --cacert: TLS with our CA and the IP SAN, nothing insecure.
review() {  # FIXTURE -> the response as JSON
  curl -sS --fail --max-time 10 --cacert "$WORK/tls/ca.crt" -H 'Content-Type: application/json' \
    --data-binary @"tests/fixtures/admission/$1" "https://127.0.0.1:$PORT/$2"
}
review 02-a-deploy-create-deployment-create-validate.json validate >"$WORK/deny.json" || { logs; die "POST /validate"; }
review 08-b-deploy-update-tp2-deployment-update-validate.json validate >"$WORK/allow.json" || { logs; die "POST /validate"; }
"$PY" - "$WORK/deny.json" "$WORK/allow.json" <<'EOF' || die "unexpected AdmissionReview answers"
import json, sys
deny = json.load(open(sys.argv[1]))["response"]
allow = json.load(open(sys.argv[2]))["response"]
message = deny.get("status", {}).get("message", "")
assert deny["allowed"] is False and "-1.44 GiB" in message, deny
assert allow["allowed"] is True, allow
print("==> image.sh: run: TLS AdmissionReview: TP=1 denied:", message.splitlines()[0][:160], file=sys.stderr)
print("==> image.sh: run: TLS AdmissionReview: TP=2 allowed", file=sys.stderr)
EOF

# Through the API server: the chart's webhook configurations call the container by URL.
"${KCTL[@]}" apply --server-side -f "$WORK/webhooks.yaml" >/dev/null || die "applying the webhook configurations"
"${KCTL[@]}" create namespace "$NAMESPACE-check" >/dev/null
denied=0
for _ in $(seq 60); do  # the API server loads new webhook configurations asynchronously
  if out=$(sed '/^  namespace:/d' tests/fixtures/admission/manifests/a-deploy-create.yaml \
             | "${KCTL[@]}" apply --dry-run=server -n "$NAMESPACE-check" -f - 2>&1); then
    sleep 0.5; continue
  fi
  case $out in *"-1.44 GiB"*) denied=1; break ;; esac
  sleep 0.5
done
[ "$denied" = 1 ] || { logs; die "kubectl apply --dry-run=server was not denied by the container: $out"; }
say "run: kubectl apply --dry-run=server denied by the container: $(echo "$out" | head -n 1 | cut -c1-160)"

podman stop -t 20 "$CONTAINER" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[ "$code" = 0 ] || { logs; die "the server exited $code on SIGTERM"; }
say "run: stopped cleanly on SIGTERM"
say "done: built and ran $TAG in $(stamp)"
