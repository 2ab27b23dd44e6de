#!/usr/bin/env bash
# SIGTERM during training finishes the step, saves a checkpoint, says where and exits 0; the
# checkpoint then resumes. Usage: signal_test.sh PATH/TO/probmoe
set -euo pipefail
probmoe=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 400); do echo "the quick brown fox jumps over the lazy dog $i times"; done > "$work/text.txt"

"$probmoe" train --data "$work/text.txt" --out "$work/run" --steps 100000 --batch 2 --seq 32 \
  --layers 1 --hidden 32 --heads 2 --experts 4 --k 2 --intermediate 32 --eval-interval 0 \
  > "$work/out.txt" 2> "$work/err.txt" &
pid=$!
for _ in $(seq 1 200); do  # until a few steps are logged (at most 20 s)
  [ -f "$work/run/metrics.jsonl" ] && [ "$(wc -l < "$work/run/metrics.jsonl")" -ge 3 ] && break
  sleep 0.1
done
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || { echo "train exited with $status after SIGTERM"; cat "$work/err.txt"; exit 1; }
grep -q "stopped at step" "$work/out.txt" || { echo "no 'stopped at step' message"; cat "$work/out.txt"; exit 1; }
checkpoint=$(ls -d "$work"/run/checkpoint-* | tail -n 1)
for file in config.json model.safetensors optimizer.safetensors trainer_state.json; do
  [ -f "$checkpoint/$file" ] || { echo "$checkpoint lacks $file"; exit 1; }
done
step=$((10#${checkpoint##*-}))
"$probmoe" train --resume "$checkpoint" --steps $((step + 2)) > "$work/resume.txt" 2>&1 ||
  { echo "resuming failed"; cat "$work/resume.txt"; exit 1; }
grep -q "trained to step $((step + 2))" "$work/resume.txt" || { cat "$work/resume.txt"; exit 1; }
echo "signal test: stopped at step $step, saved $checkpoint, resumed to step $((step + 2))"
