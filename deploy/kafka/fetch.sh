#!/usr/bin/env bash
# Fetch the jars of a local Apache Kafka broker (KRaft) with Maven, once.
#
# Usage: fetch.sh [DEST]
#   DEST defaults to ${STREAMTUNE_CACHE:-$HOME/.cache/streamtune}/kafka-<version>/libs.
#   The version is $STREAMTUNE_KAFKA_VERSION (default 4.1.1). Prints DEST on stdout.
#   Skips the download when DEST/.complete exists. streamtune.dev.LocalKafka.ensure_jars() does the same.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${STREAMTUNE_KAFKA_VERSION:-4.1.1}"
dest="${1:-${STREAMTUNE_CACHE:-$HOME/.cache/streamtune}/kafka-${version}/libs}"

if [[ -f "$dest/.complete" ]]; then
  echo "$dest"
  exit 0
fi
for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fetch.sh: $tool not found; fix: apt-get install -y openjdk-17-jre-headless maven" >&2
    exit 2
  fi
done

parent="$(dirname "$dest")"
mkdir -p "$parent"
# Download into a temporary sibling and rename it into place, so nobody sees half a classpath.
tmp="$(mktemp -d "$parent/.libs.tmp-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch.sh: fetching Kafka $version jars into $dest" >&2
# Maven's output goes to stderr: stdout carries only DEST, for callers like run.sh.
mvn -q -B -Dstyle.color=never -f "$here/pom.xml" -Dkafka.version="$version" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >&2
echo "kafka $version" >"$tmp/.complete"

if [[ -d "$dest" && ! -f "$dest/.complete" ]]; then
  rm -rf "$dest"  # an earlier, interrupted copy
fi
if [[ ! -e "$dest" ]]; then
  mv "$tmp" "$dest"
fi
echo "$dest"
