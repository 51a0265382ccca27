#!/usr/bin/env bash
# The main job, until the whole local stack (`covertype up`) exists: the source API plus a
# full collection of its 10 batches into the data DB, printing what was stored.
# Demo timing: batches rotate every COVERTYPE_BATCH_SECONDS (default here 3 s, not 300).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

shared=../shared/data/covtype.csv.gz
if [ -z "${COVERTYPE_SOURCE_DATA:-}" ] && [ -f "$shared" ]; then
  export COVERTYPE_SOURCE_DATA=$(realpath "$shared")
fi
export COVERTYPE_BATCH_SECONDS=${COVERTYPE_BATCH_SECONDS:-3}
port=${COVERTYPE_SOURCE_PORT:-8087}
export COVERTYPE_SOURCE_URL=${COVERTYPE_SOURCE_URL:-http://127.0.0.1:$port}
group=${COVERTYPE_GROUP_NUMBER:-7}
mkdir -p .covertype/logs

# The source API in its own process group, stopped with it on any exit.
setsid .venv/bin/covertype source --port "$port" > .covertype/logs/source.log 2>&1 &
source_pid=$!
trap 'kill -TERM -- -$source_pid 2>/dev/null || true; wait $source_pid 2>/dev/null || true' EXIT

echo "source API starting on $COVERTYPE_SOURCE_URL (log: .covertype/logs/source.log)"
get() { .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1])' "$1" 2>/dev/null; }
for _ in $(seq 600); do
  get "$COVERTYPE_SOURCE_URL/" && break
  kill -0 $source_pid 2>/dev/null || { tail -20 .covertype/logs/source.log; exit 1; }
  sleep 0.1
done
# Start the group over, so a second run collects again (and stores only what is new).
get "$COVERTYPE_SOURCE_URL/restart_data_generation?group_number=$group"
echo "collecting group $group, batches rotating every ${COVERTYPE_BATCH_SECONDS}s"
.venv/bin/covertype --log-level WARNING ingest --until-exhausted
