#!/usr/bin/env bash
# Build (or reuse) KEDA's operator and metrics adapter from their Go module, for running the real
# KEDA beside this operator on the local cluster (the side-by-side benchmark of issue 12). Opt-in:
# `make keda-bin`; `make test` does not build it.
#
# They land in $FWO_CACHE/keda/<version + go.mod/go.sum hash>/bin/{keda-operator,keda-adapter},
# outside the repo, so a fresh clone on the same machine reuses them; a second run with both in
# place does nothing and needs no Go. KEDA's CRDs ship inside the module (config/crd/bases/):
# `build.sh --crd-dir` prints where they are once the module is downloaded.
#
#   build.sh              build what is missing, print the bin directory on the last line
#   build.sh --bin-dir    only print the bin directory that would be used (no build, no checks)
#   build.sh --crd-dir    print the directory of KEDA's CRDs (downloads the module if needed)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FWO_CACHE="${FWO_CACHE:-$HOME/.cache/flowable-worker-operator}"
module=github.com/kedacore/keda/v2

# The version comes from go.mod (go get -tool $module/cmd/operator@vX; go mod tidy).
keda_version="$(awk -v m="$module" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
[[ -n "$keda_version" ]] || { echo "error: $here/go.mod requires no $module version" >&2; exit 1; }
inputs_hash="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-10)"
bin_dir="$FWO_CACHE/keda/keda-${keda_version}_${inputs_hash}/bin"

case "${1:-}" in
    --bin-dir) echo "$bin_dir"; exit 0 ;;
    --crd-dir)
        dir="$(cd "$here" && go list -m -f '{{.Dir}}' "$module")"
        [[ -n "$dir" ]] || (cd "$here" && go mod download "$module")
        dir="$(cd "$here" && go list -m -f '{{.Dir}}' "$module")"
        echo "$dir/config/crd/bases"
        exit 0 ;;
esac

if [[ -x "$bin_dir/keda-operator" && -x "$bin_dir/keda-adapter" ]]; then
    echo "keda cached"
    echo "$bin_dir"
    exit 0
fi

command -v go >/dev/null || {
    echo "error: go not found on PATH: install Go 1.26 or newer; it builds KEDA for the side-by-side benchmark" >&2
    exit 1
}
gov="$(go env GOVERSION)"
if [[ ! "$gov" =~ ^go1\.(2[6-9]|[3-9][0-9]) ]]; then
    echo "error: $gov is too old: KEDA $keda_version needs Go 1.26 or newer" >&2
    exit 1
fi

mkdir -p "$bin_dir"
t0=$SECONDS
echo "building KEDA $keda_version operator and metrics adapter (cold: tens of minutes on 2 cores)"
for name in operator adapter; do
    # A private name, then a rename: a build cut short never leaves a binary the cache trusts.
    tmp="$(mktemp "$bin_dir/keda-$name.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    (cd "$here" && go build -trimpath \
        -ldflags "-s -w -X $module/version.Version=$keda_version" \
        -o "$tmp" "$module/cmd/$name")
    chmod 0755 "$tmp"
    mv -f "$tmp" "$bin_dir/keda-$name"
    trap - EXIT
done
echo "keda built in $((SECONDS - t0))s"
echo "$bin_dir"
