#!/usr/bin/env bash
# The GPU measurements still open (issues 7 and 8), for a machine without PyPI access: each step
# time-limited, results packed after every step so a call cut short keeps what it measured.
#
#   bash benchmarks/gpu_run.sh OUTDIR [STEP ...]
#
# STEPs (default: all but backbones, ~25 min): latency_probe (2.5 min), sweep_ssn (5: M = 1, 8, 32),
# sweep_ead (4.7), ivt_ssn (4.2: inference_vs_torch for SuperSimpleNet), ivt_ead (9.3: for EfficientAD-S/M)
# and, when asked for, backbones (2: folded against as-loaded). Under a 10-minute limit per command, three calls:
#   latency_probe sweep_ssn  |  sweep_ead ivt_ssn  |  ivt_ead
#
# Before: `bash benchmarks/gpu_prepare.sh` here (the anomalib wheels into .whl/), and carry .whl with the
# call; without them the torch rows are skipped (jaxad rows only).
set -u
OUTDIR=${1:?usage: bash benchmarks/gpu_run.sh OUTDIR [STEP ...]}; shift
WANT=" ${*:-latency_probe sweep_ssn sweep_ead ivt_ssn ivt_ead} "
R=$(mktemp -d); mkdir -p "$OUTDIR"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
pack() { tar czf "$OUTDIR/gpu_run.tgz" -C "$R" .; }
step() {  # step SECONDS NAME COMMAND...: run (if NAME was asked for), keep the log, print its tail, pack
  local limit=$1 name=$2; shift 2
  [[ "$WANT" == *" $name "* ]] || return 0
  echo "== $name (limit ${limit} s)"
  timeout "$limit" "$@" > "$R/$name.log" 2>&1; echo "rc $?"
  grep -v "Delay kernel timed out" "$R/$name.log" | tail -14; pack
}
step 150 latency_probe python3 benchmarks/latency_probe.py --out "$R/latency_probe.json"
step 120 backbones python3 benchmarks/backbone_throughput.py --batch-sizes 1 64 --out "$R/backbones.json"
step 300 sweep_ssn python3 benchmarks/sweep_speed.py --methods supersimplenet --members 1,8,32 --separate-runs 2 \
  --steps 50 --out "$R/sweep_speed_ssn"
step 280 sweep_ead python3 benchmarks/sweep_speed.py --methods efficient_ad --members 1,8,32 --separate-runs 2 \
  --steps 100 --out "$R/sweep_speed_ead"
step 250 ivt_ssn python3 benchmarks/inference_vs_torch.py --models supersimplenet --out "$R/inference_vs_torch_ssn.json"
step 555 ivt_ead python3 benchmarks/inference_vs_torch.py --models efficient_ad_s,efficient_ad_m \
  --out "$R/inference_vs_torch_ead.json"
pack; echo "results: $OUTDIR/gpu_run.tgz"
