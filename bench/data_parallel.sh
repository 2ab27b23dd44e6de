#!/usr/bin/env bash
# Data and expert parallelism on this machine: tokens/s of one process with 2 threads against
# `mpirun -np 2` with 1 thread each (data parallelism; and with the experts split over the two,
# --expert-parallel 2), on a large-ish model (the train_step bench's: L4 H512, 8 heads, E16 k4,
# I1024, 8 × 256 tokens, probmoe), what the collectives cost and each process's peak memory.
#   bash bench/data_parallel.sh [BUILD_DIR] [STEPS]
# Prints each figure and the ratio to the single process. Needs mpirun (skips without it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$root/build}") steps=${2:-8}
command -v mpirun >/dev/null || { echo "data_parallel: mpirun is not installed; skipped"; exit 0; }
text=$(cd "$root" && bash scripts/fetch_data.sh tinyshakespeare)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
launch=(mpirun -np 2 --bind-to core)
[ "$(id -u)" -eq 0 ] && launch+=(--allow-run-as-root)
args=(--data "$text" --layers 4 --hidden 512 --heads 8 --experts 16 --k 4 --intermediate 1024 --batch 8 --seq 256
      --steps "$steps" --warmup 1 --eval-interval 0 --eval-batches 1 --router probmoe)
speed() { sed -n 's/^trained to step [0-9]* at \([0-9.]*\) tokens\/s$/\1/p' "$1"; }
OMP_NUM_THREADS=2 "$build/probmoe" train "${args[@]}" --out "$work/one" > "$work/one.txt" 2>&1
OMP_NUM_THREADS=1 "${launch[@]}" "$build/probmoe" train "${args[@]}" --out "$work/two" > "$work/two.txt" 2>&1
OMP_NUM_THREADS=1 PROBMOE_ALLREDUCE=blocking "${launch[@]}" "$build/probmoe" train "${args[@]}" --out "$work/blocking" \
  > "$work/blocking.txt" 2>&1
OMP_NUM_THREADS=1 "${launch[@]}" "$build/probmoe" train "${args[@]}" --expert-parallel 2 --out "$work/experts" \
  > "$work/experts.txt" 2>&1
one=$(speed "$work/one.txt") two=$(speed "$work/two.txt") blocking=$(speed "$work/blocking.txt")
experts=$(speed "$work/experts.txt")
ratio() { awk -v a="$1" -v b="$one" 'BEGIN { printf "%.2f", a / b }'; }
echo "data and expert parallelism, $steps steps of 8 x 256 tokens (L4 H512 E16 k4 I1024, probmoe):"
echo "  1 process,  2 threads: $one tokens/s"
echo "  2 processes, 1 thread each, buckets overlapping the backward pass: $two tokens/s ($(ratio "$two")x)"
grep -E "^(communication|peak memory)" "$work/two.txt" | sed 's/^/    /'
echo "  the same, each bucket summed at once (PROBMOE_ALLREDUCE=blocking): $blocking tokens/s ($(ratio "$blocking")x)"
grep "^communication" "$work/blocking.txt" | sed 's/^/    /'
echo "  2 processes, 1 thread each, experts split over them (--expert-parallel 2): $experts tokens/s ($(ratio "$experts")x)"
grep -E "^(communication|peak memory)" "$work/experts.txt" | sed 's/^/    /'
