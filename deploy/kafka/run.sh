#!/usr/bin/env bash
# Run the single-node Apache Kafka broker (KRaft, 127.0.0.1) in the foreground, for use by hand; Ctrl-C stops it.
#
# It is `streamtune kafka`: the broker's config lives in one place, streamtune/embedded/kafka.py.
# Settings: STREAMTUNE_HOME (data, pid, logs), STREAMTUNE_KAFKA_PORT (default 19092; the controller listener
# takes the next port), STREAMTUNE_KAFKA_HEAP (default 512m), STREAMTUNE_KAFKA_VERSION (default 4.1.1).
# PYTHON picks the interpreter that has streamtune installed (default: the repo's .venv, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$here/../../.venv/bin/python" ]]; then py="$here/../../.venv/bin/python"; else py=python3; fi
fi
exec "$py" -m streamtune.cli kafka "$@"
