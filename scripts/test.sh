#!/usr/bin/env bash
# The test suite: sets up .venv, lints, type-checks, builds the docs, runs pytest (extra
# arguments go to pytest, which then runs them alone).
# Tests read the real data from COVERTYPE_SOURCE_DATA (default: ../shared/data beside the
# checkout) and MariaDB/MySQL from COVERTYPE_TEST_MYSQL_URL when set (.ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

shared=../shared/data/covtype.csv.gz
if [ -z "${COVERTYPE_SOURCE_DATA:-}" ] && [ -f "$shared" ]; then
  export COVERTYPE_SOURCE_DATA=$(realpath "$shared")
fi

# Debian packages some tests need: chromium and chromium-driver (the UI and docs screenshots),
# prometheus (promtool checks the alert rules and configs; `covertype up` runs Prometheus),
# npm (the docs build fetches Mermaid's bundle once, into .cache/docs).
missing=()
command -v chromium > /dev/null && command -v chromedriver > /dev/null \
  || missing+=(chromium chromium-driver)
command -v promtool > /dev/null && command -v prometheus > /dev/null || missing+=(prometheus)
command -v npm > /dev/null || missing+=(npm)
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
# The docs site (a broken link, a page missing from the nav or a failing generator fails).
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir site

# With arguments: pytest with them, in this process.
[ $# -eq 0 ] || exec .venv/bin/python -m pytest "$@"
# The whole suite in two streams. The local stack's file (fault tests timed in seconds, the
# rest mostly waiting on its batch windows) at normal priority; every other file beside it in
# two workers (a file each), in a session of their own at nice 10 (a tenth of the weight), so
# the stack's restarts get the CPU they are timed on: Linux weighs sessions, not processes
# (autogroups), and the servers that stream starts keep its priority (src/covertype/priority.py).
# One worker left a core idle a third of the time; the two repeat the session fixtures.
mkdir -p test-output
stack_log=test-output/pytest-local-stack.log
.venv/bin/python -m pytest tests/integration/test_stack.py > "$stack_log" 2>&1 &
stack=$!
setsid sh -c 'echo 10 > /proc/self/autogroup 2> /dev/null; exec nice -n 10 "$@"' sh \
  .venv/bin/python -m pytest -n 2 --dist loadfile --ignore tests/integration/test_stack.py &
rest=$!
# Background jobs ignore Ctrl-C: pass it on as SIGTERM, which pytest ends on as on Ctrl-C.
trap 'kill -TERM "$stack" "$rest" 2> /dev/null' INT TERM
rest_rc=0
wait "$rest" || rest_rc=$?
stack_rc=0
wait "$stack" || stack_rc=$?
echo "---------------------------------------- tests/integration/test_stack.py ($stack_log)"
cat "$stack_log"
[ "$rest_rc" -eq 0 ] && [ "$stack_rc" -eq 0 ]
