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

# The UI test takes a screenshot in headless Chromium: Debian's chromium and chromium-driver.
if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
  apt_install="apt-get install -y chromium chromium-driver"
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "test.sh: installing Debian's chromium and chromium-driver (UI screenshot test)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null
  else
    echo "test.sh: the UI screenshot test needs Chromium; install it with: sudo $apt_install" >&2
    exit 1
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
