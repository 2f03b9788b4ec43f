#!/usr/bin/env bash
# Runs every benchmark behind benchmarks/RESULTS.md, one job at a time, each after the
# machine has gone quiet (1-min load average below $MAX_LOAD, up to $MAX_WAIT s).
# Logs and JSON go to $OUT (default benchmarks/runs/). Usage: [OUT=dir] bash benchmarks/run_all.sh [job ...]
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/runs}
MAX_LOAD=${MAX_LOAD:-1.0}
MAX_WAIT=${MAX_WAIT:-900}
mkdir -p "$OUT"

wait_quiet() {
  local t0=$SECONDS
  while :; do
    local la; la=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$la" -v m="$MAX_LOAD" 'BEGIN{exit !(l < m)}'; then break; fi
    if (( SECONDS - t0 > MAX_WAIT )); then echo "  still busy (load $la) after ${MAX_WAIT}s: running anyway"; break; fi
    sleep 20
  done
  echo "  [$(date +%H:%M:%S)] load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

job() {  # job NAME SCRIPT ARGS...  (2-thread jobs are skipped on a busy machine: OpenMP
  local name=$1; shift  # threads spinning on an oversubscribed 2-core machine slow down ~100x)
  echo "== $name"; wait_quiet
  if [[ $name == t2_* ]] && ! awk -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN{exit !(l < 1.2)}'; then
    echo "  skipped: 2 threads on a busy machine"; return
  fi
  "$PY" "$@" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "  [$(date +%H:%M:%S)] done (rc $?), load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

T=benchmarks/bench_training.py
ALL=(t1_lr1e-4 t1_lr0.1 t2_lr1e-4 t2_lr0.1 detail reference presets)
for j in "${@:-${ALL[@]}}"; do
  case $j in
    t1_lr1e-4) job $j $T --mode both --threads 1 --actor-lr 1e-4 --no-prune --profile-episodes 20 ;;
    t1_lr0.1)  job $j $T --mode both --threads 1 --actor-lr 0.1 --no-prune --profile-episodes 20 ;;
    t2_lr1e-4) job $j $T --mode both --threads 2 --actor-lr 1e-4 --profile-episodes 20 ;;
    t2_lr0.1)  job $j $T --mode both --threads 2 --actor-lr 0.1 --profile-episodes 0 ;;
    detail)    job $j $T --mode both --threads 1 --episodes 100 --detail --profile-episodes 0 ;;
    reference) job $j $T --mode both --threads 1 --episodes 0 --profile-episodes 0 --reference-updates 3 ;;
    presets)   job $j benchmarks/bench_presets.py --threads 1 ;;
    *) echo "unknown job $j" ;;
  esac
done
