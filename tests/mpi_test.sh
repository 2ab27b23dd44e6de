#!/usr/bin/env bash
# Data and expert parallelism under MPI: for every router, 20 steps under `mpirun -np 2` and
# `-np 4` (oversubscribed), without and with --expert-parallel (groups of 2, and of 4), give
# the single process's per-step losses to 1e-5 and its final weights to 1e-5 of each tensor's
# norm. Rank 0 alone writes. Checkpoints resume under other process counts and group sizes.
# Usage: mpi_test.sh PROBMOE MODEL_DIFF
set -euo pipefail
probmoe=$(realpath "$1") model_diff=$(realpath "$2")
if ! command -v mpirun >/dev/null; then
  echo "SKIPPED: mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
words=(the cat sat on a mat. dog ran)
RANDOM=7 # bash's generator, seeded: the same corpus every run
for i in $(seq 1 6000); do
  printf '%s ' "${words[$((RANDOM % 8))]}"
  if [ $((i % 13)) -eq 0 ]; then echo; fi
done > corpus.txt
launch=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && launch+=(--allow-run-as-root)
export OMP_NUM_THREADS=1
common=(--data corpus.txt --layers 2 --hidden 32 --heads 4 --experts 4 --k 2 --batch 6 --seq 16 --accum 2
        --steps 20 --warmup 2 --lr 3e-3 --eval-interval 0)
losses() { grep -o '"loss": [0-9.e+-]*' "$1/metrics.jsonl" | cut -d' ' -f2; }
status=0
for router in topk probmoe probmoe-dyn densemixer softmoe probmoe-group; do
  extra=()
  [ "$router" = topk ] && extra=(--lb-coef 0.01 --z-coef 0.001 --bias-rate 0.01)
  if ! "$probmoe" train "${common[@]}" --router "$router" "${extra[@]}" --out "single-$router" > single.log 2>&1; then
    echo "FAIL $router: the single-process run failed"; tail -5 single.log; status=1; continue
  fi
  # "processes expert-group": group 1 is data parallelism alone
  for layout in "2 1" "4 1" "2 2" "4 2" "4 4"; do
    read -r np group <<< "$layout"
    out="np$np-ep$group-$router"
    if ! "${launch[@]}" -np "$np" "$probmoe" train "${common[@]}" --router "$router" "${extra[@]}" \
         --expert-parallel "$group" --out "$out" > "$out.log" 2>&1; then
      echo "FAIL $router np $np expert groups of $group: the run failed"; tail -5 "$out.log"; status=1; continue
    fi
    [ "$group" -gt 1 ] && ! grep -q "MB sent by all-to-all" "$out.log" && {
      echo "FAIL $router np $np expert groups of $group: no all-to-all bytes reported"; status=1; }
    # probmoe-group's defaults here, 2 groups of 2 and at most 1 of them, match expert groups of 2:
    # a token's 2 experts sit on one rank, so one row per rank is half a row per pair
    [ "$router" = probmoe-group ] && [ "$group" -eq 2 ] && ! grep -q "any of its experts (0.50×)" "$out.log" && {
      echo "FAIL probmoe-group np $np expert groups of 2: not half the rows per (token, rank)"
      grep "expert rows" "$out.log"; status=1; }
    if ! paste <(losses "single-$router") <(losses "$out") | awk -v r="$router" -v n="$np" '
        { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * $1 + 1e-6) { printf "FAIL %s np %d step %d: loss %s, single %s\n", r, n, NR, $2, $1; bad = 1 } }
        END { if (NR != 20) { printf "FAIL %s np %d: %d steps logged\n", r, n, NR; bad = 1 } exit bad }'; then
      status=1; continue
    fi
    if ! diff=$("$model_diff" "single-$router/model" "$out/model" 1e-5); then
      echo "FAIL $router np $np: weights: $diff"; status=1; continue
    fi
    # the other ranks wrote nothing: one metrics file, one model
    [ "$(find "$out" -name metrics.jsonl | wc -l)" -eq 1 ] || { echo "FAIL $router np $np: extra files"; status=1; }
    echo "ok $router np $np expert groups of $group: losses equal, weights $diff"
  done
done
# Resume: a run of 20 steps saves at step 10 on its way; resumed from there under other process
# counts and expert groups it gives the uninterrupted run's last 10 losses to 1e-5, under its
# own the very same bits. Saved by -np 2 (data parallelism) and by -np 4 in expert groups of 2.
router=probmoe
for saved_layout in "2 1" "4 2"; do
  read -r saved_np saved_group <<< "$saved_layout"
  saved="saved-$saved_np-$saved_group"
  "${launch[@]}" -np "$saved_np" "$probmoe" train "${common[@]}" --router $router --save-interval 10 \
    --expert-parallel "$saved_group" --out "$saved" > "$saved.log" 2>&1 ||
    { echo "FAIL the run to resume from failed"; tail -5 "$saved.log"; exit 1; }
  for layout in "1 1" "2 1" "4 1" "2 2" "4 2" "4 4"; do
    read -r np group <<< "$layout"
    resumed="resumed-$saved_np-$saved_group-to-$np-$group"
    rm -rf "$resumed"
    cp -r "$saved" "$resumed"
    run=("${launch[@]}" -np "$np")
    [ "$np" -eq 1 ] && run=()
    if ! "${run[@]}" "$probmoe" train --resume "$resumed/checkpoint-000010" --expert-parallel "$group" \
         > "$resumed.log" 2>&1; then
      echo "FAIL resuming ($saved_layout) under ($layout)"; tail -5 "$resumed.log"; status=1; continue
    fi
    tolerance=1e-5
    [ "$layout" = "$saved_layout" ] && tolerance=0 # the same processes: the same bits
    if ! paste <(losses "$saved" | tail -n 10) <(losses "$resumed" | tail -n 10) | awk -v n="$layout" -v t="$tolerance" '
        { d = $1 - $2; if (d < 0) d = -d; if (d > t * $1) { printf "FAIL resume under %s: step %d loss %s, want %s\n", n, NR + 10, $2, $1; bad = 1 } }
        END { if (NR != 10) { printf "FAIL resume under %s: %d steps after the resume\n", n, NR; bad = 1 } exit bad }'; then
      status=1; continue
    fi
    if [ "$tolerance" = 0 ] && ! cmp -s "$saved/model/model.safetensors" "$resumed/model/model.safetensors"; then
      echo "FAIL resume under the saving layout ($layout): the final weights differ"; status=1; continue
    fi
    echo "ok resumed a checkpoint of ($saved_layout) (processes, expert group) under ($layout): the uninterrupted run's losses"
  done
done
cp -r saved-2-1 saved # for the tests below

# Impossible layouts are refused with a message, by every process, with no hang.
refused() { # expected message, then the command
  local message=$1; shift
  if timeout 120 "$@" > refused.log 2>&1; then
    echo "FAIL ${*: -4}: not refused"; status=1
  elif ! grep -q "$message" refused.log; then
    echo "FAIL ${*: -4}: no clear message"; tail -3 refused.log; status=1
  else
    echo "ok refused: $(grep -m1 "$message" refused.log | cut -c1-150)"
  fi
}
refused "a multiple of 2" "${launch[@]}" -np 3 "$probmoe" train "${common[@]}" --expert-parallel 2 --out bad3
refused "cannot split 2 experts" "${launch[@]}" -np 4 "$probmoe" train "${common[@]}" --experts 2 \
  --expert-parallel 4 --out bad4
refused "start it with mpirun" "$probmoe" train "${common[@]}" --expert-parallel 2 --out bad1

# A checkpoint of 6-sequence batches resumed by 7 processes: refused by all of them, no hang.
if timeout 120 "${launch[@]}" -np 7 "$probmoe" train --resume saved/checkpoint-000010 > seven.log 2>&1; then
  echo "FAIL a resume with more processes than sequences was not refused"; status=1
elif ! grep -q "fewer than the 7 processes" seven.log; then
  echo "FAIL a resume with more processes than sequences: no clear message"; tail -5 seven.log; status=1
else
  echo "ok a resume with more processes than sequences is refused"
fi

# The process id of one probmoe rank of the run writing DIR, and waiting (up to a minute) for
# a background run to end: "ended" says whether it did.
rank_of() { pgrep -f -- "--out $1" | while read -r pid; do
  [ "$(ps -o comm= -p "$pid")" = probmoe ] && echo "$pid"; done | tail -n 1; }
wait_ended() {
  ended=false
  for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || { ended=true; break; }; sleep 0.1; done
}

# SIGUSR1 to mpirun reaches every rank: they finish the step, rank 0 saves, all stop (exit 0).
"${launch[@]}" -np 2 "$probmoe" train "${common[@]}" --router probmoe --steps 1000000 --out usr1 > usr1.log 2>&1 &
runner=$!
for _ in $(seq 1 300); do [ -s usr1/metrics.jsonl ] && break; sleep 0.1; done
kill -USR1 "$runner"
wait_ended "$runner"
if $ended && wait "$runner" && grep -q "stopped at step" usr1.log && ls -d usr1/checkpoint-* > /dev/null 2>&1; then
  echo "ok SIGUSR1 to mpirun saved a checkpoint and stopped every rank"
else
  echo "FAIL SIGUSR1 to mpirun"; $ended || pkill -KILL -f -- "--out usr1" || true; tail -5 usr1.log; status=1
fi

# A rank that dies: mpirun stops the others and names it (no hang: the run must end within a
# minute), and the last checkpoint stays good (it resumes).
( "${launch[@]}" -np 2 "$probmoe" train "${common[@]}" --router probmoe --steps 1000000 --save-interval 5 \
    --out killed > killed.log 2>&1; echo "exit $?" >> killed.log ) &
runner=$!
for _ in $(seq 1 300); do [ -d killed/checkpoint-000005 ] && break; sleep 0.1; done
victim=$(rank_of killed)
[ -n "$victim" ] && kill -KILL "$victim"
wait_ended "$runner"
if ! $ended; then
  echo "FAIL a killed rank left the run hanging"; pkill -KILL -f -- "--out killed" || true; status=1
elif ! grep -q "rank [0-9]* with PID" killed.log || grep -q "^exit 0$" killed.log; then
  echo "FAIL a killed rank was not reported"; tail -5 killed.log; status=1
else
  last=$(ls -d killed/checkpoint-* | tail -n 1)
  if "$probmoe" train --resume "$last" --steps $((10#${last##*-} + 1)) > resume-killed.log 2>&1; then
    echo "ok a killed rank stopped the run ($(grep -o 'rank [0-9]* with PID [0-9]*' killed.log | head -1)); $last resumes"
  else
    echo "FAIL the last checkpoint of the killed run does not resume"; tail -5 resume-killed.log; status=1
  fi
fi
# A rank that hangs (stopped with SIGSTOP): after --comm-timeout seconds in a collective the
# others end the run with a message saying so, and the last checkpoint stays good.
( "${launch[@]}" -np 2 "$probmoe" train "${common[@]}" --router probmoe --steps 1000000 --save-interval 5 \
    --comm-timeout 5 --out hung > hung.log 2>&1; echo "exit $?" >> hung.log ) &
runner=$!
for _ in $(seq 1 300); do [ -d hung/checkpoint-000005 ] && break; sleep 0.1; done
victim=$(rank_of hung)
[ -n "$victim" ] && kill -STOP "$victim"
wait_ended "$runner"
[ -n "$victim" ] && kill -CONT "$victim" 2>/dev/null
if ! $ended; then
  echo "FAIL a hung rank left the run hanging past --comm-timeout"; pkill -KILL -f -- "--out hung" || true; status=1
elif ! grep -q "has stopped responding" hung.log || grep -q "^exit 0$" hung.log; then
  echo "FAIL a hung rank was not reported"; tail -5 hung.log; status=1
else
  last=$(ls -d hung/checkpoint-* | tail -n 1)
  if "$probmoe" train --resume "$last" --steps $((10#${last##*-} + 1)) > resume-hung.log 2>&1; then
    echo "ok a hung rank ended the run after --comm-timeout ($(grep -o 'waited [0-9]* s in [A-Za-z_]*' hung.log | head -1)); $last resumes"
  else
    echo "FAIL the last checkpoint of the hung run does not resume"; tail -5 resume-hung.log; status=1
  fi
fi
exit $status
