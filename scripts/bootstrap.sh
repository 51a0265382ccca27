#!/usr/bin/env bash
# Creates .venv with Python >= 3.11 and installs the locked dependencies (requirements.lock)
# and the package, editable. uv installs them (several times faster than pip: it resolves
# nothing, downloads in parallel and links from its cache); uv itself comes from PyPI into
# .venv/.uv, pinned here. Where uv cannot run, pip installs the same lock.
# Idempotent: does nothing unless requirements.lock, pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.covertype-installed
want=$(cat requirements.lock pyproject.toml "$0" | sha256sum | cut -d' ' -f1)
[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && exit 0

if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "bootstrap: Python >= 3.11 is needed, $python is $("$python" -V 2>&1)" >&2; exit 1; }
  echo "bootstrap: creating .venv with $("$python" -V 2>&1)" >&2
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
uv=.venv/.uv/bin/uv
if [ ! -x "$uv" ] || [ "$("$uv" --version 2>/dev/null)" != "uv $UV_VERSION" ]; then
  "${pip[@]}" install --target .venv/.uv --upgrade "uv==$UV_VERSION" 2>/dev/null || true
fi
# uv checks certificates against the system's store, as pip does here.
export UV_NATIVE_TLS=1 UV_PYTHON=.venv/bin/python
if [ -x "$uv" ] && "$uv" --version > /dev/null 2>&1; then
  echo "bootstrap: installing requirements.lock with uv $UV_VERSION" >&2
  "$uv" pip install --quiet -r requirements.lock
  "$uv" pip install --quiet --no-deps -e .
else
  echo "bootstrap: uv cannot run here; installing requirements.lock with pip" >&2
  "${pip[@]}" install --upgrade pip
  "${pip[@]}" install -r requirements.lock
  "${pip[@]}" install --no-deps -e .
fi
# Bytecode for every module, written once here: where the environment sets
# PYTHONDONTWRITEBYTECODE (CI's does) no process writes it, so each would compile what it
# imports again (2.4 s of every API start; seconds of every airflow or CLI process).
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/python -m compileall -q -j 0 "$site" src > /dev/null 2>&1 || true
echo "$want" > "$stamp"
