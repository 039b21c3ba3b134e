#!/usr/bin/env bash
# Prepares, on the development machine (PyPI reachable), what the lent GPU machine lacks, so that a
# GPU session spends its device time measuring: run once, then carry .whl and .devdata with each call.
#
#   bash benchmarks/gpu_prepare.sh
#
# .whl/      anomalib 2.7.0 and the packages it imports that the machine's image lacks, as Python 3.12
#            wheels (benchmarks/gpu_run.sh installs them; without them the torch rows are skipped)
# .devdata/  the embedded splits at 128 px and the EfficientNet-Lite0 weights, for the quality
#            benchmarks (supersimplenet_embedded_sweep.py, efficient_ad_embedded.py)
# Both folders are git-ignored; together they stay far below the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p .whl .devdata
# Versions as the parity extra resolves them here (pyproject.toml), so both machines run the same anomalib.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  anomalib==2.7.0 jsonargparse==4.46.0 omegaconf==2.4.0 kornia==0.9.0 kornia_rs==0.2.0 platformdirs==4.14.7 \
  docstring_parser==0.18.0 rich_argparse==1.8.0
ls .whl/[Ff]r[Ee][Ii][Aa]-0.2-*.whl >/dev/null 2>&1 || "$PY" -m pip wheel -q --no-deps -w .whl FrEIA==0.2  # sdist only
[ -f .devdata/embedded128.npz ] || "$PY" benchmarks/supersimplenet_embedded_sweep.py --write-arrays .devdata/embedded128.npz
[ -f .devdata/efficientnet_lite0.safetensors ] || \
  .venv/bin/jaxad weights convert efficientnet_lite0 --out .devdata/efficientnet_lite0.safetensors
du -sh .whl .devdata
echo "carry: [\".whl\", \".devdata\"]; then: bash benchmarks/gpu_run.sh \"\$OUT\" latency_probe sweep_ssn"
