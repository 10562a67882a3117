#!/usr/bin/env bash
# The leaderboard's remaining units in WORKERS processes at once, for at most SECONDS, then
# stopped (a unit cut short resumes from its last epoch's checkpoint). Made for one call on a
# lent GPU machine (one GPU, 16 cores: 8 processes of 2 threads keep it busy, since every
# student here is small), and it runs on a CPU too.
#
#   bash experiments/leaderboard_parallel.sh OUT [DEVICE] [WORKERS] [SECONDS] [THREADS]
#
# The units are written to runs/leaderboard_parallel/units (the committed ones copied there
# first, so that the plan knows them); the checkpoints and students to the usual work folder,
# runs/fashion_mnist/leaderboard, where a later call on the same machine resumes them. OUT
# gets three files (the device tool returns at most 8): units.tar (every unit file), logs.tar
# (the workers' logs) and plan.md (what is left). Back home:
#   mkdir -p /tmp/units && tar -xf OUT/units.tar -C /tmp/units
#   python experiments/leaderboard.py collect --from /tmp/units
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: leaderboard_parallel.sh OUT [DEVICE] [WORKERS] [SECONDS] [THREADS]}
DEVICE=${2:-cuda}
WORKERS=${3:-8}
SECONDS_LEFT=${4:-540}
THREADS=${5:-2}
PYTHON=${PYTHON:-python}
UNITS=docs/results/fashion_mnist/leaderboard/units
HERE=runs/leaderboard_parallel
mkdir -p "$OUT" "$HERE/units" "$HERE/logs"
cp -n "$UNITS"/*.json "$HERE/units/" 2>/dev/null || true
pids=()
for i in $(seq 1 "$WORKERS"); do
  OMP_NUM_THREADS=$THREADS PYTHONPATH=$PWD timeout --signal=TERM "$SECONDS_LEFT" \
    "$PYTHON" experiments/leaderboard.py run --out "$HERE/units" --device "$DEVICE" \
    --threads "$THREADS" --report '' --prefer experiments/leaderboard_priority.txt \
    > "$HERE/logs/worker$i.log" 2>&1 &
  pids+=($!)
  sleep 2  # staggered: each takes the next unit of the plan
done
for pid in "${pids[@]}"; do wait "$pid"; done
PYTHONPATH=$PWD "$PYTHON" experiments/leaderboard.py plan --out "$HERE/units" \
  --device "$DEVICE" > "$OUT/plan.md" 2>&1
tar -cf "$OUT/units.tar" -C "$HERE/units" .
tar -cf "$OUT/logs.tar" -C "$HERE/logs" .
new=$(comm -13 <(ls "$UNITS" | sort) <(ls "$HERE/units" | sort) | wc -l)
echo "leaderboard_parallel: $new unit files beyond the committed ones ($WORKERS workers on $DEVICE, ${SECONDS_LEFT}s)"
