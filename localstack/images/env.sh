# Sourced by the scripts in localstack/images: podman's configuration from this directory (never
# /etc), the cache, the version and the image names. Safe to source twice.
IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$IMAGES_DIR/../.." && pwd)"
export CONTAINERS_CONF="$IMAGES_DIR/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$IMAGES_DIR/registries.conf"
export FWO_CACHE="${FWO_CACHE:-$HOME/.cache/flowable-worker-operator}"
# Where the images are published; `make images` tags the local builds with exactly the references
# the operator and the chart default to, so a pool without `worker.image` runs the local build.
IMAGE_REPO="${FWO_IMAGE_REPO:-ghcr.io/flowable-worker-operator}"

# The project's one version: pyproject's `version = "..."` line, or, once the version is
# single-sourced in the package, its `__version__ = "..."`.
fwo_version() {
    local v
    v="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$REPO_DIR/pyproject.toml" | head -1)"
    if [[ -z "$v" ]]; then
        v="$(grep -rhoE '^__version__ *= *"[^"]+"' "$REPO_DIR/worker/flowable_worker" \
            | head -1 | sed 's/.*"\(.*\)"/\1/')"
    fi
    if [[ -z "$v" ]]; then
        echo "error: no version found (pyproject.toml 'version =' or flowable_worker.__version__)" >&2
        return 1
    fi
    echo "$v"
}

fwo_die() {
    echo "error: $*" >&2
    exit 1
}
