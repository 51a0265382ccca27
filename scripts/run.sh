#!/usr/bin/env bash
# The main job: the whole local stack (`covertype up --fast`): source API, MLflow, Airflow,
# inference API and UI, watched until the first champion is served; Ctrl-C stops it all.
# Arguments go to `covertype up` (e.g. `scripts/run.sh --verbose`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

shared=../shared/data/covtype.csv.gz
if [ -z "${COVERTYPE_SOURCE_DATA:-}" ] && [ -f "$shared" ]; then
  export COVERTYPE_SOURCE_DATA=$(realpath "$shared")
fi
exec .venv/bin/covertype up --fast "$@"
