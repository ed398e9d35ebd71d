#!/usr/bin/env bash
# `make images`: both Dockerfile targets built with podman on the Debian-made base (base.sh),
# tagged <repo>/worker:<version> and <repo>/operator:<version>, the references the operator and the
# chart default to. Usage: build.sh [TARGET...] (default: worker operator).
# Builds run with --network host (pip downloads the dependencies), the host's CA bundle and a pip
# configuration that uses it mounted for the build only, and --pull=never: every image a build
# reads is local, so a missing one fails at once with its name instead of waiting on a registry.
# FWO_BUILD_CONTEXT builds another checkout (e.g. a clean `git archive` of a commit) instead of
# this work tree.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

targets=("$@")
((${#targets[@]})) || targets=(worker operator)
bash "$IMAGES_DIR/podman.sh" >/dev/null
base="$(bash "$IMAGES_DIR/base.sh" | tail -1)"
context="${FWO_BUILD_CONTEXT:-$REPO_DIR}"
version="$(REPO_DIR="$context" fwo_version)"
revision="$(git -C "$context" rev-parse HEAD 2>/dev/null || true)"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
mounts=()
if [[ -s "$ca_bundle" ]]; then
    mounts=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro"
            --volume "$IMAGES_DIR/pip.conf:/etc/pip.conf:ro")
fi

for target in "${targets[@]}"; do
    image="$IMAGE_REPO/$target:$version"
    start=$SECONDS
    if ! podman build --pull=never --network host --layers \
        --target "$target" --tag "$image" \
        --build-arg "BASE_IMAGE=$base" \
        --build-arg "VERSION=$version" \
        --build-arg "IMAGE_REVISION=$revision" \
        "${mounts[@]}" \
        --file "$context/Dockerfile" "$context" >"$FWO_CACHE/images/build-$target.log" 2>&1; then
        tail -15 "$FWO_CACHE/images/build-$target.log" >&2
        fwo_die "podman build of the $target image failed; log: $FWO_CACHE/images/build-$target.log"
    fi
    size="$(podman image inspect --format '{{.Size}}' "$image")"
    echo "built $image in $((SECONDS - start)) s ($((size / 1000000)) MB)"
done
# Each build from changed sources leaves the previous venv stages untagged (`<none>`); they are
# the layer cache of an unchanged rebuild, so only those older than a week go.
podman image prune --force --filter until=168h >/dev/null 2>&1 || true
