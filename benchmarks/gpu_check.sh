#!/usr/bin/env bash
# Every benchmark that needs a GPU, in one script that ends in under 5 minutes on one H100:
#   1. train_throughput --shape base   (a/b/c variants, FLAN-T5-base shape, LoRA, bf16 autocast)   <= 130 s
#   2. rank_classification --shape base (t2t scorer vs one forward per choice)                    <=  45 s
#   3. train_throughput --shape large  (fewer steps and variants)                                 <=  95 s
#   4. causal_packing --shape smollm2-135m, then llama-1b (decoder-only: packed vs padded, LM head
#      only at label positions vs full logits; shapes built from configs)                     <= 60 + 75 s
# Each step has its own time limit, so one that hangs or runs out of memory costs only itself; the training
# runs write their JSON after every round, so a step cut short still leaves its finished rounds.
# Results: $OUT if set (the device tool's folder), else benchmarks/results/<date>/: train_base.json,
# rank_base.json, train_large.json, causal_smollm2-135m.json, causal_llama-1b.json, summary.json (the figures
# README.md records), gpu_check.log. With --shape tiny the causal step runs causal_packing's tiny shape.
# Only torch, transformers, peft, accelerate, tokenizers and sentencepiece are needed (no `datasets`).
#
#   bash benchmarks/gpu_check.sh                              # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu --shape tiny --quick   # tests the script's Python on a CPU
#   COMPILE=1 bash benchmarks/gpu_check.sh                    # also the torch.compile variant (slow to build)
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
SHAPES=""
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --shape) SHAPES="$SHAPES $2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "gpu_check.sh: unknown option $1 (use --device D, --shape S, --quick)" >&2; exit 2 ;;
  esac
done
SHAPES=${SHAPES:-"base large"}
PY=${PYTHON:-}
if [ -z "$PY" ]; then  # the repo's virtualenv where there is one (a dev machine), else the system python3
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3 || command -v python); fi
fi
RESULTS=${OUT:-benchmarks/results/$(date +%F)}
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_check.log"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
: > "$LOG"

# --quick: the smallest settings, so that a CPU runs the whole script in well under a minute.
TRAIN_QUICK=()
RANK_QUICK=()
CAUSAL_QUICK=()
if [ "$QUICK" = 1 ]; then
  CAUSAL_QUICK=(--batch-size 4 --steps 1 --rounds 1 --max-input-len 48 --max-target-len 12 --row-len 64)
  TRAIN_QUICK=(--batch-size 4 --steps 1 --rounds 1 --max-input-len 64 --max-target-len 16
               --variants a_sdpa,b_eager,c_now_64,c_pack32_512)
  RANK_QUICK=(--n 8 --naive-n 2 --rounds 1 --batch-sizes 4)
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep stdout's last line as NAME.json
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local start=$SECONDS
  timeout --kill-after=15 "$limit" "$@" > "$RESULTS/$name.stdout" 2>> "$LOG"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start))s" | tee -a "$LOG"
  # Training writes its own JSON with --out (partial after each round); others print one JSON line last.
  if [ ! -s "$RESULTS/$name.json" ] && [ -s "$RESULTS/$name.stdout" ]; then
    tail -n 1 "$RESULTS/$name.stdout" > "$RESULTS/$name.json"
  fi
  rm -f "$RESULTS/$name.stdout" "$RESULTS/$name.json.tmp"
}

{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } \
  >> "$LOG" 2>&1
TRAIN_LIMIT=130
LARGE_LIMIT=95
for shape in $SHAPES; do
  limit=$TRAIN_LIMIT
  [ "$shape" = large ] && limit=$LARGE_LIMIT
  step "train_$shape" "$limit" "$PY" benchmarks/train_throughput.py --shape "$shape" --device "$DEVICE" \
    --out "$RESULTS/train_$shape.json" "${TRAIN_QUICK[@]}"
  if [ "$shape" != large ]; then
    step "rank_$shape" 45 "$PY" benchmarks/rank_classification.py --shape "$shape" --device "$DEVICE" \
      "${RANK_QUICK[@]}"
  fi
done
CAUSAL_SHAPES="smollm2-135m llama-1b"
case " $SHAPES " in *" tiny "*) CAUSAL_SHAPES=tiny ;; esac
for shape in $CAUSAL_SHAPES; do
  limit=60
  [ "$shape" = llama-1b ] && limit=75
  [ "$shape" = tiny ] && limit=120  # a shared CPU: imports and the model build alone can take 20 s
  step "causal_$shape" "$limit" "$PY" benchmarks/causal_packing.py --shape "$shape" --device "$DEVICE" \
    --out "$RESULTS/causal_$shape.json" "${CAUSAL_QUICK[@]}"
done
if [ "${COMPILE:-0}" = 1 ]; then
  shape=${SHAPES%% *}
  shape=${shape:-base}
  step "train_${shape}_compiled" 240 "$PY" benchmarks/train_throughput.py --shape "$shape" --device "$DEVICE" \
    --variants b_eager,c_pack512_16384,c_pack512_16384_compiled --out "$RESULTS/train_${shape}_compiled.json" \
    "${TRAIN_QUICK[@]}"
fi

"$PY" - "$RESULTS" <<'EOF' 2>> "$LOG"
import json, pathlib, sys
folder = pathlib.Path(sys.argv[1])
summary = {}
for path in sorted(folder.glob("*.json")):
    if path.name == "summary.json":
        continue
    try:
        r = json.loads(path.read_text())
    except ValueError as exc:
        summary[path.stem] = {"error": f"unreadable: {exc}"}
        continue
    keep = ("gpu", "cpu", "device", "date", "torch", "transformers", "peft", "complete", "rounds_done",
            "examples_per_step", "best", "tokens_per_s", "padding_share", "peak_mem_mb", "ratio_c_a",
            "ratio_c_b", "ratio_c_now_a", "ratio_c_now_b", "memory_ratio_a_c", "examples_per_s",
            "ratio_t2t_naive", "same_predictions", "shape", "loss_rel_diff",
            "ratio_packed_padded", "memory_ratio_padded_packed", "ratio_full_head_step_time")
    summary[path.stem] = {k: r[k] for k in keep if k in r}
    if "variants" in r:
        summary[path.stem]["variants"] = {n: v.get("tokens_per_s") or v.get("error")
                                          for n, v in r["variants"].items()}
(folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary))
EOF
