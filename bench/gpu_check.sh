#!/usr/bin/env bash
# The one GPU check of issue 12, item 5 (in-process MedGemma decoding), for a session that has a
# device: about 6 minutes on an H200, well inside 8.
#
#   run(command="bash bench/gpu_check.sh", timeout_s=540)      # the device tool; no carry needed
#
# It installs nothing: the device image's python3 has torch and transformers (pydantic and the
# rest of ChartAgent are not needed: the benchmark imports only tools.medgemma.static_decoding).
# Random weights in MedGemma 1.5 4B's architecture, bf16, nothing downloaded.
#
# What it measures, each against the physical floor and against eager in the same run:
#   1. the 85-slice CT study (22,474-token prompt, 300 forced new tokens): transformers' eager
#      generate (the baseline: 66.5 ms/token and 22.5 s on 2026-11-28) vs ChartAgent's static
#      KV cache + compiled decode step (CUDA graphs); compile happens in a warm-up outside timing;
#   2. one CXR (329-token prompt, 100 new tokens), the same two ways (a second cache bucket:
#      a second compile);
#   3. (--profile) GPU time per op and kernel of the CT's prefill and 16 uncompiled static decode
#      steps: if compiled decode misses its aim, this says where a step goes (e.g. which SDPA
#      kernel attends over the 32,768-slot masked cache of the 5 global layers).
# Aims (issue 12): decode <= 3x its floor at batch 1, the CT study <= 3x its floor; printed on
# each `bench medgemma-...` line. Tokens of the compiled path are compared with eager's (bf16
# ties may differ; the CPU tests prove equality in float32).
#
# Dry run on a CPU (checks the script, not the GPU):
#   BENCH_ARGS="--config tiny --device cpu --quick --skip batch --decode eager,static" \
#     PYTHON=.venv/bin/python bash bench/gpu_check.sh
#
# Writes under $OUT: medgemma_gpu.json, medgemma_gpu.log, env.txt. Copy the first two to
# bench/results/medgemma_gpu_h200_<date>.{json,log} and put the figures in the README.
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# Recompiles, graph breaks and skipped CUDA graphs would each explain a slow compiled decode.
export TORCH_LOGS=${TORCH_LOGS:-recompiles,graph_breaks,perf_hints}
PY=${PYTHON:-python3}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$PY" -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, \
transformers.__version__, 'cuda' if torch.cuda.is_available() else 'NO CUDA')" 2>&1
  git log -1 --format='commit %H %s' 2>/dev/null || true
} | tee "$OUT/env.txt"

# 450 s cap: a compile that hangs must not eat the session's device time; the JSON is written
# after every part, so a cut run keeps what it measured.
BENCH_ARGS=${BENCH_ARGS:---config medgemma-4b --device cuda --reps 2 --skip batch --decode eager,compiled --profile}
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
timeout 450 "$PY" bench/bench_medgemma_gpu.py $BENCH_ARGS \
  --json "$OUT/medgemma_gpu.json" 2>&1 | tee "$OUT/medgemma_gpu.log"
status=${PIPESTATUS[0]}
echo "gpu_check: benchmark exit status $status (124 = cut at 450 s)" | tee -a "$OUT/medgemma_gpu.log"
exit "$status"
