#!/usr/bin/env bash
# The test suite: sets up .venv, lints, runs pytest (extra arguments go to pytest).
# Tests read the real data from COVERTYPE_SOURCE_DATA (default: ../shared/data beside the
# checkout) and MariaDB/MySQL from COVERTYPE_TEST_MYSQL_URL when set (.ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

shared=../shared/data/covtype.csv.gz
if [ -z "${COVERTYPE_SOURCE_DATA:-}" ] && [ -f "$shared" ]; then
  export COVERTYPE_SOURCE_DATA=$(realpath "$shared")
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
