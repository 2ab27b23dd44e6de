#!/usr/bin/env bash
# SIGTERM during training finishes the step, saves a checkpoint, says where and exits 0; the
# checkpoint then resumes. Meanwhile the run directory is locked: a second train or compare
# there is refused and changes nothing; after SIGKILL the next run takes the stale lock over.
# Usage: signal_test.sh PATH/TO/probmoe
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
# while it runs, another train or compare writing there is refused and changes nothing
before=$(ls -A "$work/run")
for command in "train --data $work/text.txt --out $work/run --steps 2" "compare --out $work/run --preset quick"; do
  status=0
  # shellcheck disable=SC2086
  "$probmoe" $command > "$work/second.txt" 2>&1 || status=$?
  [ "$status" -eq 1 ] || { echo "a second '$command' exited with $status"; cat "$work/second.txt"; exit 1; }
  grep -q "is in use by probmoe train, pid $pid on host $(uname -n)" "$work/second.txt" ||
    { echo "a second '$command' was not refused by the lock"; cat "$work/second.txt"; exit 1; }
done
[ "$(ls -A "$work/run")" = "$before" ] || { echo "a refused writer changed $work/run"; ls -A "$work/run"; exit 1; }
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
# with a trailing slash, as tab completion writes it: the run continues in run/, not inside the checkpoint
"$probmoe" train --resume "$checkpoint/" --steps $((step + 2)) > "$work/resume.txt" 2>&1 ||
  { echo "resuming failed"; cat "$work/resume.txt"; exit 1; }
grep -q "trained to step $((step + 2))" "$work/resume.txt" || { cat "$work/resume.txt"; exit 1; }
[ ! -e "$checkpoint/metrics.jsonl" ] || { echo "resuming from $checkpoint/ wrote into the checkpoint"; exit 1; }
[ ! -e "$work/run/.lock" ] || { echo "the lock outlived the runs"; exit 1; }

# SIGKILL leaves the lock file; the next run says it takes the lock over and trains
"$probmoe" train --data "$work/text.txt" --out "$work/killed" --steps 100000 --batch 2 --seq 32 \
  --layers 1 --hidden 32 --heads 2 --experts 4 --k 2 --intermediate 32 --eval-interval 0 \
  > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  [ -f "$work/killed/metrics.jsonl" ] && [ "$(wc -l < "$work/killed/metrics.jsonl")" -ge 1 ] && break
  sleep 0.1
done
kill -KILL "$pid"
wait "$pid" || true
grep -q "^pid $pid$" "$work/killed/.lock" || { echo "no lock file of pid $pid after SIGKILL"; exit 1; }
"$probmoe" train --data "$work/text.txt" --out "$work/killed" --steps 2 --batch 2 --seq 32 --layers 1 \
  --hidden 32 --heads 2 --experts 4 --k 2 --intermediate 32 > "$work/takeover.txt" 2>&1 ||
  { echo "training after a killed run failed"; cat "$work/takeover.txt"; exit 1; }
grep -q "pid $pid on host .* is no longer running .*taking the lock over" "$work/takeover.txt" ||
  { echo "no message about taking over the stale lock"; cat "$work/takeover.txt"; exit 1; }
[ ! -e "$work/killed/.lock" ] || { echo "the lock outlived the run after the takeover"; exit 1; }
echo "signal test: stopped at step $step, saved $checkpoint, resumed to step $((step + 2))"
