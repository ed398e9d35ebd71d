#!/usr/bin/env bash
# `make podman`: make sure podman (with runc) and debootstrap are here and that podman can run a
# container engine on this machine. Installs the Debian packages with apt-get when one is missing
# (as root); where that is impossible, one line says what to install and the script fails.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# podman: the engine; runc: the OCI runtime that works with these hosts' hybrid cgroups (crun
# does not); debootstrap: makes the base image from Debian's packages (no registry is reachable).
PACKAGES=(podman runc debootstrap)
missing=()
for cmd in podman runc debootstrap; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        fwo_die "${missing[*]} not found and cannot be installed here (needs root and apt-get): install the packages ${PACKAGES[*]}"
    fi
    echo "installing ${PACKAGES[*]} with apt-get (missing: ${missing[*]})"
    log="$(mktemp)"
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${PACKAGES[@]}"; } >"$log" 2>&1; then
        tail -5 "$log" >&2
        fwo_die "apt-get could not install ${PACKAGES[*]} (log: $log)"
    fi
    rm -f "$log"
fi
# Podman's real check: its storage and runtime come up with the project's configuration.
if ! out="$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}' 2>&1)"; then
    fwo_die "podman does not work here: $(tail -1 <<<"$out")"
fi
echo "podman $(podman version --format '{{.Client.Version}}') ready (runtime, storage: $out)"
