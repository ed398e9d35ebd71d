#!/usr/bin/env bash
# Build (or reuse) actionlint, which `make lint` runs over .github/workflows/: the release workflow
# needs a registry and GitHub's runners, so on the development machines and in CI a static check
# (expressions, action inputs, job graph, and shellcheck of `run:` scripts when shellcheck is on
# PATH) is all it gets before a tag is pushed.
#
# It lands in $FWO_CACHE/actionlint/<version>_<go.mod/go.sum hash>/bin/actionlint, outside the
# repo, so a fresh clone on the same machine reuses it; a second run with the binary in place does
# nothing (a few milliseconds) and needs no Go. Its Go module and build caches are its own, under
# $FWO_CACHE/actionlint/ too, so `rm -rf "$FWO_CACHE"` removes every trace of it.
#
#   build.sh              build actionlint if it is missing, print the bin directory on the last line
#   build.sh --bin-dir    only print the bin directory that would be used (no build, no checks)
#
# FWO_ACTIONLINT=/path/to/actionlint points at an actionlint you already have: nothing is built
# then, the script only checks that it runs and prints its directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FWO_CACHE="${FWO_CACHE:-$HOME/.cache/flowable-worker-operator}"

# The version comes from go.mod, so bumping it there (go get -tool ...@vX; go mod tidy) is the only
# edit needed.
al_version="$(awk '$1 == "github.com/rhysd/actionlint" && $2 ~ /^v/ {print $2; exit}' \
    "$here/go.mod")"
[[ -n "$al_version" ]] || {
    echo "error: $here/go.mod requires no github.com/rhysd/actionlint version" >&2
    exit 1
}
inputs_hash="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-10)"
bin_dir="$FWO_CACHE/actionlint/${al_version}_${inputs_hash}/bin"

if [[ -n "${FWO_ACTIONLINT:-}" ]]; then
    if [[ "$(basename "$FWO_ACTIONLINT")" != actionlint || ! -x "$FWO_ACTIONLINT" ]]; then
        echo "error: FWO_ACTIONLINT=$FWO_ACTIONLINT is not an executable file named actionlint" >&2
        echo "       unset FWO_ACTIONLINT to build actionlint with 'make actionlint-bin'" >&2
        exit 1
    fi
    if [[ "${1:-}" != "--bin-dir" ]]; then
        "$FWO_ACTIONLINT" -version >/dev/null 2>&1 || {
            echo "error: FWO_ACTIONLINT=$FWO_ACTIONLINT does not run ('actionlint -version' failed)" >&2
            exit 1
        }
        echo "using the actionlint in FWO_ACTIONLINT"
    fi
    dirname "$FWO_ACTIONLINT"
    exit 0
fi

if [[ "${1:-}" == "--bin-dir" ]]; then
    echo "$bin_dir"
    exit 0
fi

if [[ -x "$bin_dir/actionlint" ]]; then
    echo "actionlint cached"
    echo "$bin_dir"
    exit 0
fi

command -v go >/dev/null || {
    echo "error: go not found on PATH: install Go 1.25 or newer (https://go.dev/doc/install) and put its bin/ on PATH; it builds actionlint for make lint" >&2
    exit 1
}
gov="$(go env GOVERSION)"
if [[ ! "$gov" =~ ^go1\.(2[5-9]|[3-9][0-9]) ]]; then
    echo "error: $gov is too old: actionlint $al_version needs Go 1.25 or newer" >&2
    exit 1
fi

# Its own module and build caches: a fresh machine fills them from the module proxy (about 1 MB of
# sources), and nothing here depends on, or writes into, the user's Go caches. -modcacherw leaves
# the module cache writable, so that deleting $FWO_CACHE works without chmod.
export GOMODCACHE="$FWO_CACHE/actionlint/gomod"
export GOCACHE="$FWO_CACHE/actionlint/gocache"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"

mkdir -p "$bin_dir"
# Build to a private name and rename: two builds at once (two checkouts, a test run and `make`)
# never leave a half-written binary under the name that the cache check trusts.
tmp="$(mktemp "$bin_dir/actionlint.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
t0=$SECONDS
echo "building actionlint $al_version (cold: about a minute on 2 cores)"
# -trimpath and -s -w keep link time and size down; the version stamp is what `actionlint -version`
# prints (actionlint's own release build stamps the same variable).
(cd "$here" && go build -trimpath \
    -ldflags "-s -w -X github.com/rhysd/actionlint.version=$al_version" \
    -o "$tmp" github.com/rhysd/actionlint/cmd/actionlint)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin_dir/actionlint"
echo "actionlint built in $((SECONDS - t0))s"
echo "$bin_dir"
