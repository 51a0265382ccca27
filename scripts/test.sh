#!/usr/bin/env bash
# The test suite: sets up .venv, lints, type-checks, runs pytest (extra arguments go to pytest).
# Tests read the real data from COVERTYPE_SOURCE_DATA (default: ../shared/data beside the
# checkout) and MariaDB/MySQL from COVERTYPE_TEST_MYSQL_URL when set (.ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

shared=../shared/data/covtype.csv.gz
if [ -z "${COVERTYPE_SOURCE_DATA:-}" ] && [ -f "$shared" ]; then
  export COVERTYPE_SOURCE_DATA=$(realpath "$shared")
fi

# Debian packages some tests need: chromium and chromium-driver (the UI screenshots),
# prometheus (promtool checks the alert rules and configs; `covertype up` runs Prometheus).
missing=()
command -v chromium > /dev/null && command -v chromedriver > /dev/null \
  || missing+=(chromium chromium-driver)
command -v promtool > /dev/null && command -v prometheus > /dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "test.sh: installing Debian's ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
  else
    echo "test.sh: tests need ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # src/, configured in pyproject.toml
# Files in parallel workers (each file on one: its module fixtures once); most of the
# integration tests wait on servers. COVERTYPE_TEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest -n "${COVERTYPE_TEST_WORKERS:-3}" --dist loadfile "$@"
