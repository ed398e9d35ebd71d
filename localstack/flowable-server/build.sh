#!/usr/bin/env bash
# Build (once) the real Flowable 7.2 test server jar and print its path as the last line.
#
# The jar is cached outside the repository, at
#   $FWO_CACHE/flowable-server/<key>/flowable-server.jar
# where FWO_CACHE defaults to ~/.cache/flowable-worker-operator and <key> is a sha256 over
# pom.xml and src/**: a fresh clone on the same machine reuses the jar, and any change to the
# server's sources builds a new one. Nothing is built when the jar is already there.
#
# Why a cache and not target/: `mvn package` costs tens of seconds even with a warm ~/.m2 and
# minutes on a fresh machine; the tests and the demo start the server many times.
#
# Environment: FWO_CACHE (cache root), MVN (maven command, default `mvn`), MAVEN_ARGS (extra
# arguments, e.g. -Dmaven.repo.local=/somewhere).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${FWO_CACHE:-$HOME/.cache/flowable-worker-operator}"
mvn_cmd="${MVN:-mvn}"

die() {
    echo "error: $*" >&2
    exit 1
}

command -v java >/dev/null 2>&1 \
    || die "java not found: install a Java 17 JDK (e.g. apt-get install openjdk-17-jdk-headless) and Apache Maven 3.8+; the real Flowable test server needs both"
command -v "$mvn_cmd" >/dev/null 2>&1 \
    || die "mvn not found: install Apache Maven 3.8+ (e.g. apt-get install maven); it builds the real Flowable test server"

# The key covers exactly what goes into the jar: the pom and every source file, by path and
# content, in a stable order (LC_ALL=C sort), so the same sources give the same key anywhere.
key="$(
    cd "$here"
    {
        sha256sum pom.xml
        find src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
)"
target_dir="$cache_root/flowable-server/$key"
jar="$target_dir/flowable-server.jar"

if [[ -f "$jar" ]]; then
    echo "$jar"
    exit 0
fi

echo "building the Flowable test server (first time for key $key; takes a minute or more)..." >&2
# Build in a private copy so that concurrent builds (two checkouts, parallel CI jobs) and the
# developer's own target/ never collide; the finished jar is moved into place atomically.
work="$(mktemp -d "${TMPDIR:-/tmp}/flowable-server-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -R "$here/pom.xml" "$here/src" "$work/"
# shellcheck disable=SC2086  # MAVEN_ARGS is a word list on purpose
if ! (cd "$work" && "$mvn_cmd" -B -q package -DskipTests -Dstyle.color=never ${MAVEN_ARGS:-} >&2); then
    die "maven build of the Flowable test server failed (see the output above)"
fi
[[ -f "$work/target/flowable-server.jar" ]] || die "maven finished but target/flowable-server.jar is missing"

mkdir -p "$target_dir"
cp "$work/target/flowable-server.jar" "$target_dir/.flowable-server.jar.$$"
mv -f "$target_dir/.flowable-server.jar.$$" "$jar"
echo "built $jar" >&2
echo "$jar"
