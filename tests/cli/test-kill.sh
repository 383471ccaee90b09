#!/bin/sh
# Usage: test-kill.sh COLDDIFF DATA_DIR [SEED]
# colddiff train killed with SIGKILL at seeded pseudo-random moments: after
# every kill each best.cdm and last.cdm present must load, the epoch that
# last.cdm holds never goes back, and `train --resume` carries on. The run
# finished through kills and resumes must end with the same checkpoints,
# loss curve and final grids, byte for byte, as one uninterrupted run
# (resuming from last.cdm with the same seed and thread count is
# bit-identical, and a resumed run redoes the end-of-epoch files a kill
# right after last.cdm was written had cut short).
#
# The moments, in turn: during start-up (a random fraction of it); inside
# a checkpoint write (at the first sight of one of the process's temporary
# checkpoint files numbered at or past a random target, i.e. between their
# creation and the rename over best.cdm or last.cdm); and a random part of
# an epoch after such a write. The targets make each run progress about as
# far as the epochs left divided among the kills left.
set -u
cli=$1
data=$2
seed=${3:-20240617}
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-kill-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $desc"; fail=$((fail + 1)); fi
}
epochs=24
kills=18
# A tiny model on 48 images: an epoch takes a few tens of milliseconds, so
# best.cdm and last.cdm are rewritten many times a second. Sample grids
# only after the last epoch.
train() { # run folder, epochs, then extra options. It replaces the calling
  # (sub)shell, so that $! of `train ... &` is colddiff itself.
  out=$1 n=$2; shift 2
  exec "$cli" train --data "$data" --T 10 --batch 8 --train-limit 48 --val-fraction 0.01 \
    --cnn-hidden 4 --n-samples 1 --sample-epochs 99999 --threads 2 --epochs "$n" \
    --out "$out" "$@"
}
now_ms() { date +%s%3N; }
sleep_ms() { sleep "$(awk -v d="$1" 'BEGIN { printf "%.3f", d / 1000 }')"; }
same() { cmp -s "$1" "$2"; }
killed_or_done() { [ "$1" -eq 137 ] || [ "$1" -eq 0 ]; } # SIGKILL, or finished first

alive() { # process $1 exists and has not ended (read without forking)
  [ -r "/proc/$1/stat" ] || return 1
  line=
  read -r line <"/proc/$1/stat" || return 1
  set -- $line
  [ "${3:-Z}" != Z ] && [ "${3:-Z}" != X ]
}
# losses.csv: the losses to the last digit; its timing columns are wall times.
same_losses() { cut -d, -f1-3 "$1" >"$work/a.csv"; cut -d, -f1-3 "$2" >"$work/b.csv"; same "$work/a.csv" "$work/b.csv"; }

# Wait until process $1 has a temporary checkpoint file in $2 whose
# sequence number (the writer numbers them per process) is at least $3:
# return 0, or 1 once the process has ended.
wait_for_temp() {
  while alive "$1"; do
    for f in "$2"/*.cdm.tmp."$1".*; do
      [ -e "$f" ] && [ "${f##*.}" -ge "$3" ] && return 0
    done
  done
  return 1
}

epoch_of() { # the epoch count a checkpoint holds (colddiff info)
  "$cli" info "$1" 2>/dev/null | sed -n 's/^progress: .* optimiser steps, \([0-9]*\) epochs$/\1/p'
}

# ---- the uninterrupted run, and how long start-up and an epoch take ----------
t0=$(now_ms)
(train "$work/ref" $epochs) >/dev/null 2>"$work/ref.err"
check "the uninterrupted run exits 0" [ $? -eq 0 ]
t1=$(now_ms)
(train "$work/one" 1) >/dev/null 2>&1
t2=$(now_ms)
epoch_ms=$(( (t1 - t0 - (t2 - t1)) / (epochs - 1) ))
[ $epoch_ms -gt 0 ] || epoch_ms=1
start_ms=$(( t2 - t1 - epoch_ms ))
[ $start_ms -gt 0 ] || start_ms=1

# ---- a kill right after last.cdm is written, before the epoch's row and
# grids: simulated exactly by removing them from a finished copy ---------------
cp -r "$work/ref" "$work/cut"
head -n "$epochs" "$work/ref/losses.csv" >"$work/cut/losses.csv" # drops the last row
rm -f "$work/cut"/samples_epoch*.png "$work/cut"/restore_epoch*.png
(train "$work/cut" $epochs --resume) >/dev/null 2>"$work/cut.err"
check "a run cut after its last checkpoint resumes" [ $? -eq 0 ]
check "the cut run's losses are made again as they were" same_losses "$work/ref/losses.csv" \
  "$work/cut/losses.csv"
for f in loss.svg samples_epoch0$epochs.png restore_epoch0$epochs.png best.cdm last.cdm; do
  check "the cut run's $f is made again as it was" same "$work/ref/$f" "$work/cut/$f"
done

# ---- kills ----------------------------------------------------------------------
awk -v s="$seed" -v n=$kills 'BEGIN { srand(s); for (i = 0; i < n; i++) print rand(), rand() }' \
  >"$work/draws"
run="$work/run"
in_write=0
completed=0
last_epoch=0
k=0
while read -r u1 u2; do
  k=$((k + 1))
  (train "$run" $epochs --resume) >/dev/null 2>"$work/kill$k.err" &
  pid=$!
  # Saves per epoch: last.cdm, and best.cdm when the loss improved.
  left=$(( (epochs - last_epoch) * 3 / 2 ))
  target=$(awk -v u="$u1" -v l=$left -v k=$((kills - k + 1)) 'BEGIN { printf "%d", u * 2 * l / k }')
  case $((k % 3)) in
    1) sleep_ms "$(awk -v u="$u1" -v t=$start_ms 'BEGIN { printf "%d", u * t }')"
       moment="in start-up" ;;
    2) if wait_for_temp $pid "$run" "$target"; then
         moment="writing checkpoint $target"
         in_write=$((in_write + 1))
       else
         moment="after the run ended"
       fi ;;
    0) wait_for_temp $pid "$run" "$target"
       delay=$(awk -v u="$u2" -v t=$epoch_ms 'BEGIN { printf "%d", u * t }')
       sleep_ms "$delay"
       moment="$delay ms after checkpoint $target began" ;;
  esac
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  rc=$?
  [ $rc -eq 0 ] && completed=$((completed + 1))
  check "run $k ends by the kill or completes (exit $rc)" killed_or_done $rc
  for f in best.cdm last.cdm; do
    if [ -e "$run/$f" ]; then
      check "kill $k ($moment): $f loads" "$cli" info "$run/$f" >/dev/null 2>&1
    fi
  done
  if [ -e "$run/last.cdm" ]; then
    e=$(epoch_of "$run/last.cdm")
    check "kill $k: last.cdm's epoch ${e:-?} is not before $last_epoch" \
      [ "${e:--1}" -ge "$last_epoch" ]
    last_epoch=${e:-$last_epoch}
  fi
  [ -n "${KILL_DEBUG:-}" ] && echo "kill $k: $moment, exit $rc, last.cdm at epoch $last_epoch"
done <"$work/draws"

(train "$run" $epochs --resume) >"$work/final.out" 2>"$work/final.err"
check "the last resume exits 0" [ $? -eq 0 ]
check "the last resume finishes (or finds the run complete)" \
  grep -qE "colddiff: (done|already at epoch $epochs of $epochs; nothing to do)" "$work/final.out"
check "last.cdm holds all $epochs epochs" [ "$(epoch_of "$run/last.cdm")" = $epochs ]
check "the losses equal the uninterrupted run's" same_losses "$work/ref/losses.csv" "$run/losses.csv"
for f in best.cdm last.cdm loss.svg samples_epoch0$epochs.png restore_epoch0$epochs.png; do
  check "$f equals the uninterrupted run's" same "$work/ref/$f" "$run/$f"
done
echo "test-kill: start-up $start_ms ms, $epoch_ms ms an epoch; $k kills ($in_write inside a" \
  "checkpoint write, $completed runs completed), last.cdm at epoch $last_epoch of $epochs" \
  "before the last resume; $pass passed, $fail failed"
[ "$fail" -eq 0 ] || { cat "$work/final.err"; exit 1; }
