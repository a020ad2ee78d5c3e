#!/usr/bin/env bash
# One call on a one-GPU machine, at most 10 minutes: what a GPU does for this project.
#
#   INFOVAE_DATA_DIR=/path/to/data bash bench/gpu_check.sh [--out DIR] [--cpu-smoke]
#
# Stages, each under its own time limit (the sum stays under 9 minutes), each printing its
# figures as it goes; a summary table at the end names every stage with its exit status and
# seconds, so a stage cut by its limit is visible rather than silent:
#   1. throughput  bench/train_throughput.py on MNIST, conv and MLP nets (ELBO, MMD) and the
#                  PixelCNN decoder: fp32, then train.amp (bf16 autocast), then train.compile.
#                  Ratios are against the plain fp32 eager minimal loop of the same run.
#   2. packing     bench/gpu_packing.py: trials/h with 1, 2 and 4 trials sharing the GPU
#                  (studies/mnist.yaml, 2 epochs per trial). Needs Ray.
#   3. study       a short MNIST study through the real CLI: studies/mnist.yaml cut to
#                  4 search trials per arm of 5 epochs, 4 per GPU, confirm best 1 x 2 seeds,
#                  then `show` and `report`. Needs Ray and Optuna.
# A stage whose packages are missing is skipped with the reason (see bench/README.md for
# carrying wheels to a machine that lacks them). Without a CUDA GPU the script says so and
# exits 0, unless --cpu-smoke: then every stage runs in a tiny form on the CPU, to check that
# the script itself works (tests/test_gpu_check_script.py does that in CI).
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
OUT_DIR=""
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT_DIR="$2"; shift 2 ;;
        --cpu-smoke) SMOKE=1; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (use --out DIR, --cpu-smoke)" >&2; exit 2 ;;
    esac
done
if [ -z "$OUT_DIR" ]; then
    OUT_DIR="$(mktemp -d -t gpu-check-XXXXXX)"
fi
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0

echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ); results under $OUT_DIR"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a); CPUs: $(nproc)"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if [ "$SMOKE" -eq 0 ]; then
        echo "no CUDA GPU visible to $PY (torch.cuda.is_available() is False): nothing to measure"
        exit 0
    fi
    echo "--cpu-smoke: no GPU; every stage runs in a tiny form on the CPU (figures mean nothing)"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
echo "data: INFOVAE_DATA_DIR=${INFOVAE_DATA_DIR:-<unset: the per-user cache>}"

has() { "$PY" -c "import $1" >/dev/null 2>&1; }
SUMMARY=()
stage() {  # stage NAME LIMIT_S COMMAND...: run it, time it, remember its outcome
    local name="$1" limit="$2"; shift 2
    echo; echo "== $name (limit ${limit} s): $*"
    local start=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    rc=${PIPESTATUS[0]}
    local took=$((SECONDS - start)) outcome="ok"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then outcome="cut at its ${limit} s limit"
    elif [ "$rc" -eq 1 ] && [ "${name#throughput}" != "$name" ]; then
        outcome="ran; ratio target not met"  # train_throughput.py's verdict, not a failure
    elif [ "$rc" -ne 0 ]; then outcome="failed (exit $rc)"; fi
    SUMMARY+=("$(printf '%-24s %-28s %5d s' "$name" "$outcome" "$took")")
}
skip() { SUMMARY+=("$(printf '%-24s skipped: %s' "$1" "$2")"); echo; echo "== $1 skipped: $2"; }

# 1. Training throughput: fp32, AMP, compile (ours against the same fp32 eager minimal loop).
if [ "$SMOKE" -eq 1 ]; then
    TP=(--train-images 512 --repeats 1 --configs mlp-elbo --no-warmup)
else
    TP=(--epochs 1 --repeats 2 --configs mlp-elbo,mlp-mmd,conv-elbo,conv-mmd,pixelcnn-elbo)
fi
stage throughput-fp32 100 "$PY" bench/train_throughput.py "${TP[@]}"
stage throughput-amp 80 "$PY" bench/train_throughput.py "${TP[@]}" --amp
stage throughput-compile 120 "$PY" bench/train_throughput.py "${TP[@]}" --compile

# 2. Trials per GPU, through the real runner.
if has ray && has optuna; then
    if [ "$SMOKE" -eq 1 ]; then
        skip packing "needs a CUDA GPU (bench/gpu_packing.py measures nothing on a CPU)"
    else
        stage packing 150 "$PY" bench/gpu_packing.py --levels 1,2,4 --epochs 2 --waves 1 \
            --keep "$OUT_DIR/packing"
    fi
else
    skip packing "ray or optuna is not importable by $PY"
fi

# 3. A short MNIST study through the CLI: search, confirm, show, report.
if has ray && has optuna && has plotly && has pydantic && has typer; then
    STUDY_FILE="$OUT_DIR/gpu-check.yaml"
    "$PY" - "$STUDY_FILE" "$SMOKE" <<'EOF'
import sys

import yaml

path, smoke = sys.argv[1], sys.argv[2] == "1"
with open("studies/mnist.yaml", encoding="utf-8") as handle:
    doc = yaml.safe_load(handle)
doc["name"] = "gpu-check"
doc["description"] = "studies/mnist.yaml cut to a few minutes by bench/gpu_check.sh"
doc["defaults"]["train"]["epochs"] = 1 if smoke else 5
doc["defaults"]["eval"] = {"max_points": 2000, "iwae_samples": 100, "iwae_points": 200,
                           "probe_labels": [100]}
doc["search"]["trials_per_arm"] = 1 if smoke else 4
doc["search"]["max_concurrent"] = 1 if smoke else 4
doc["confirm"] = {"top_k": 1, "seeds": 1 if smoke else 2, "seed_start": 1000,
                  "rank_by": "metric.nll_iwae"}
doc["resources"] = {"cpu": 1, "gpu": 0.0} if smoke else {"cpu": 2, "gpu": 0.25}
if smoke:  # the CPU form: MLP nets on 512 images
    doc["data"]["train_size"] = 512
    for part in ("encoder", "decoder"):
        doc["defaults"]["model"][part].update({"kind": "mlp", "width": 64, "depth": 1})
    doc["arms"]["elbo"]["search"] = {"train.lr": {"log_uniform": {"low": 1e-4, "high": 3e-3}}}
    doc["arms"]["infovae-mmd"]["search"] = {
        "objective.lambda": {"log_uniform": {"low": 1.0, "high": 100.0}}}
with open(path, "w", encoding="utf-8") as handle:
    yaml.safe_dump(doc, handle, sort_keys=False)
EOF
    stage study-run 200 "$PY" -m sweep.cli run "$STUDY_FILE" --results "$OUT_DIR/results"
    stage study-show 30 "$PY" -m sweep.cli show "$OUT_DIR/results/gpu-check"
    stage study-report 40 "$PY" -m sweep.cli report "$OUT_DIR/results/gpu-check"
else
    skip study "one of ray, optuna, plotly, pydantic, typer is not importable by $PY"
fi

echo; echo "== summary (stage, outcome, seconds); logs under $OUT_DIR"
printf '%s\n' "${SUMMARY[@]}"
for line in "${SUMMARY[@]}"; do
    case "$line" in *failed*|*cut*) exit 1 ;; esac
done
exit 0
