#!/usr/bin/env bash
# Installs jaxad with its test and parity extras into .venv and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,parity]'
# The parity extra is installed, so a parity test that cannot import it fails (tests/conftest.py).
JAXAD_REQUIRE_PARITY=1 exec .venv/bin/python -m pytest -n 2 "$@"
