#!/usr/bin/env bash
# Build (or reuse) Prometheus's promtool, which tests/alerts runs to check and unit-test the
# alerting and recording rules with Prometheus's own rule engine (`promtool test rules`) and to
# lint the metrics both components export (`promtool check metrics`).
#
# It lands in $FWO_CACHE/prometheus/<version + go.mod/go.sum hash>/bin/promtool, outside the repo,
# so a fresh clone on the same machine reuses it; a second run with the binary in place does
# nothing (a few milliseconds) and needs no Go.
#
#   build.sh              build promtool if it is missing, print the bin directory on the last line
#   build.sh --bin-dir    only print the bin directory that would be used (no build, no checks)
#
# FWO_PROMTOOL=/path/to/promtool points at a promtool you already have: nothing is built then, the
# script only checks that it runs and prints its directory. GOMODCACHE, GOCACHE and GOFLAGS are
# honoured as by any go command.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FWO_CACHE="${FWO_CACHE:-$HOME/.cache/flowable-worker-operator}"

# The version comes from go.mod, so bumping it there (go get -tool ...@vX; go mod tidy) is the only
# edit needed.
prom_version="$(awk '$1 == "github.com/prometheus/prometheus" && $2 ~ /^v/ {print $2; exit}' \
    "$here/go.mod")"
[[ -n "$prom_version" ]] || {
    echo "error: $here/go.mod requires no github.com/prometheus/prometheus version" >&2
    exit 1
}
inputs_hash="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-10)"
bin_dir="$FWO_CACHE/prometheus/prometheus-${prom_version}_${inputs_hash}/bin"

if [[ -n "${FWO_PROMTOOL:-}" ]]; then
    if [[ "$(basename "$FWO_PROMTOOL")" != promtool || ! -x "$FWO_PROMTOOL" ]]; then
        echo "error: FWO_PROMTOOL=$FWO_PROMTOOL is not an executable file named promtool" >&2
        echo "       unset FWO_PROMTOOL to build promtool with 'make promtool-bin'" >&2
        exit 1
    fi
    if [[ "${1:-}" != "--bin-dir" ]]; then
        "$FWO_PROMTOOL" --version >/dev/null 2>&1 || {
            echo "error: FWO_PROMTOOL=$FWO_PROMTOOL does not run ('promtool --version' failed)" >&2
            exit 1
        }
        echo "using the promtool in FWO_PROMTOOL"
    fi
    dirname "$FWO_PROMTOOL"
    exit 0
fi

if [[ "${1:-}" == "--bin-dir" ]]; then
    echo "$bin_dir"
    exit 0
fi

if [[ -x "$bin_dir/promtool" ]]; then
    echo "promtool cached"
    echo "$bin_dir"
    exit 0
fi

command -v go >/dev/null || {
    echo "error: go not found on PATH: install Go 1.26 or newer (https://go.dev/doc/install) and put its bin/ on PATH; it builds promtool for tests/alerts" >&2
    exit 1
}
gov="$(go env GOVERSION)"
if [[ ! "$gov" =~ ^go1\.(2[6-9]|[3-9][0-9]) ]]; then
    echo "error: $gov is too old: Prometheus $prom_version needs Go 1.26 or newer" >&2
    exit 1
fi

mkdir -p "$bin_dir"
# Build to a private name and rename: two builds at once (two checkouts, a test run and `make`)
# never leave a half-written binary under the name that the cache check trusts.
tmp="$(mktemp "$bin_dir/promtool.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
t0=$SECONDS
echo "building promtool from Prometheus $prom_version (cold: about 6 minutes on 2 cores)"
# -trimpath and -s -w keep link time and size down; the version stamp is what `promtool --version`
# prints (Prometheus's Makefile stamps the same variables).
version_pkg=github.com/prometheus/common/version
(cd "$here" && go build -trimpath \
    -ldflags "-s -w -X $version_pkg.Version=${prom_version#v} -X $version_pkg.Branch=module" \
    -o "$tmp" github.com/prometheus/prometheus/cmd/promtool)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin_dir/promtool"
echo "promtool built in $((SECONDS - t0))s"
echo "$bin_dir"
