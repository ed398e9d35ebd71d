#!/usr/bin/env bash
# The images' base, made from Debian's packages because no image registry is reachable here:
# `debootstrap --variant=minbase` of bookworm with python3 (3.11, as in python:3.11-slim),
# python3-venv and ca-certificates, packed as a tarball in $FWO_CACHE/images and imported into
# podman's store. The tarball's name carries a hash of everything that goes into it (this script,
# the suite, the packages, the mirror, the architecture, RECIPE), so a changed input makes a new
# base and an unchanged one is never rebuilt: a podman store without the image gets it re-imported
# from the tarball in seconds. Bump RECIPE when the steps below change what goes into the tarball.
# Prints the image reference on its last line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

SUITE=bookworm
VARIANT=minbase
INCLUDE=python3,python3-venv,ca-certificates
MIRROR="${FWO_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
RECIPE=1
# What `podman import` sets on the image (not in the tarball, so part of the image's key only).
CHANGES=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
         --change 'ENV LANG=C.UTF-8')

key="$(echo "$RECIPE $SUITE $VARIANT $INCLUDE $MIRROR $(uname -m)" | sha256sum | cut -c1-12)"
image_key="$(echo "$key ${CHANGES[*]}" | sha256sum | cut -c1-12)"
image="localhost/flowable-worker-operator-base:$SUITE-$image_key"
cache="$FWO_CACHE/images"
tarball="$cache/base-$SUITE-$key.tar"
mkdir -p "$cache"
exec 9>"$cache/.base.lock"
flock 9   # two builds at once wait for one debootstrap rather than running two

if podman image exists "$image"; then
    echo "base image cached: $image" >&2
    echo "$image"
    exit 0
fi
if [[ ! -s "$tarball" ]]; then
    root="$(mktemp -d "$cache/base-root.XXXXXX")"
    trap 'rm -rf "$root" "$tarball.tmp"' EXIT
    echo "debootstrap $SUITE ($VARIANT, +$INCLUDE) from $MIRROR: 1.5 to 5 minutes" >&2
    start=$SECONDS
    if ! debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$root" "$MIRROR" \
        >"$cache/debootstrap.log" 2>&1; then
        tail -5 "$cache/debootstrap.log" >&2
        [[ -f "$root/debootstrap/debootstrap.log" ]] && tail -5 "$root/debootstrap/debootstrap.log" >&2
        fwo_die "debootstrap of the base image ($SUITE from $MIRROR) failed; log: $cache/debootstrap.log"
    fi
    # What an image needs no copy of: downloaded packages and package lists.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/debootstrap
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    echo "base tarball $tarball made in $((SECONDS - start)) s" >&2
fi
start=$SECONDS
if ! podman import --quiet "${CHANGES[@]}" "$tarball" "$image" >/dev/null; then
    fwo_die "podman import of $tarball failed"
fi
echo "base image $image imported in $((SECONDS - start)) s" >&2
echo "$image"
