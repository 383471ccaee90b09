#!/bin/sh
# Usage: test-mpi.sh COLDDIFF DATA_DIR MPIEXEC
# colddiff train under mpirun, two ranks of one thread on the MNIST slice:
# rank 0 alone writes the run folder and its losses are one process's to
# float reassociation; with --fixed-order two runs give the same bytes; a
# Ctrl-C (mpirun's SIGTERM to every rank) stops both at the same batch
# with last.cdm saved, and the resumed run ends byte for byte where an
# uninterrupted one does; a rank killed mid-epoch ends the whole job with a
# non-zero exit and a message, leaves last.cdm whole, and --resume finishes.
set -u
cli=$1
data=$2
mpiexec=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-mpi-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $desc"; fail=$((fail + 1)); fi
}
# CI runs as root in a container: Open MPI must be told that is intended,
# and may put more ranks than cores on the host.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
epochs_in() { # the epoch count a checkpoint holds (colddiff info)
  "$cli" info "$1" 2>/dev/null | sed -n 's/^progress: .* optimiser steps, \([0-9]*\) epochs$/\1/p'
}
# 193 images: each epoch ends on a batch of one row, which leaves rank 0
# with none.
tiny="--T 20 --batch 32 --train-limit 193 --cnn-hidden 4,4 --n-samples 4 --threads 1"
# Runs with exec, so that $! of `two ... &` is mpirun itself.
two() { exec "$mpiexec" -np 2 "$cli" train --data "$data" $tiny "$@"; }

# ---- two ranks against one process ---------------------------------------------
(two --out "$work/two" --epochs 3 --sample-epochs 3) >"$work/two.out" 2>"$work/two.err"
check "two ranks exit 0" [ $? -eq 0 ]
check "the run says it has 2 ranks" grep -q "2 ranks x 1 threads" "$work/two.err"
check "rank 0 reports the gradient sums" grep -q "rank 0 spent .* in .* gradient sums" "$work/two.err"
check "one rank says done" [ "$(grep -c "colddiff: done" "$work/two.out")" -eq 1 ]
for f in config.txt losses.csv loss.svg best.cdm last.cdm samples_epoch003.png restore_epoch003.png; do
  check "the two-rank run wrote $f" [ -s "$work/two/$f" ]
done
check "no temporary file is left" [ -z "$(ls "$work/two" | grep tmp)" ]
check "last.cdm holds 3 epochs" [ "$(epochs_in "$work/two/last.cdm")" = 3 ]
"$cli" train --data "$data" $tiny --out "$work/one" --epochs 3 --sample-epochs 3 \
  >/dev/null 2>"$work/one.err"
check "one process exits 0" [ $? -eq 0 ]
# Training and validation losses of every epoch within 1e-5 relative.
close_losses() {
  paste -d, "$1" "$2" | awk -F, 'NR > 1 {
      n = NF / 2
      for (i = 2; i <= 3; i++) {
        a = $i; b = $(i + n); d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b
        if (d > 1e-5 * m) { print "epoch " $1 ": " a " vs " b; bad = 1 }
      }
    } END { exit bad }'
}
check "the losses are one process's within 1e-5" close_losses "$work/two/losses.csv" \
  "$work/one/losses.csv"

# ---- the fixed order gives the same bytes every time -----------------------------------
long="--epochs 30 --sample-epochs 30 --fixed-order"
(two --out "$work/fixA" $long) >/dev/null 2>&1
check "fixed-order run A exits 0" [ $? -eq 0 ]
(two --out "$work/fixB" $long) >/dev/null 2>&1
check "fixed-order run B exits 0" [ $? -eq 0 ]
check "fixed order: the same last.cdm twice" cmp -s "$work/fixA/last.cdm" "$work/fixB/last.cdm"
check "fixed order: the same samples twice" cmp -s "$work/fixA/samples_epoch030.png" \
  "$work/fixB/samples_epoch030.png"

# ---- Ctrl-C: mpirun sends every rank SIGTERM; all stop at one batch ----------------------
# Open MPI sends it a second after the Ctrl-C, and SIGKILL a second later:
# these batches take milliseconds, so the ranks stop and save in time.
run="$work/stop"
(two --out "$run" $long) >"$work/stop.out" 2>"$work/stop.err" &
pid=$!
while [ ! -e "$run/last.cdm" ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
kill -INT $pid
wait $pid
rc=$?
# The signal comes at epoch 1 of 30, which take seconds: the job must
# still be running when the ranks get their SIGTERM.
stopped="stopped at epoch $(epochs_in "$run/last.cdm")"
check "Ctrl-C stops the job: rank 0 saved (exit $rc)" grep -q "stopped; saved" "$work/stop.err"
check "the stopped job exits non-zero (exit $rc)" [ $rc -ne 0 ]
check "each rank saw the SIGTERM" [ "$(grep -c "stopping on SIGTERM" "$work/stop.err")" -eq 2 ]
check "the stopped run's last.cdm loads" sh -c "'$cli' info '$run/last.cdm' >/dev/null"
check "one rank saved" [ "$(grep -c "stopped; saved" "$work/stop.err")" -eq 1 ]
check "the stop came before the end ($stopped)" [ "$(epochs_in "$run/last.cdm")" -lt 30 ]
(exec "$mpiexec" -np 2 "$cli" train --out "$run" --resume --fixed-order) >"$work/resume.out" \
  2>"$work/resume.err"
check "the resumed job exits 0" [ $? -eq 0 ]
check "the resumed run ends with the uninterrupted run's last.cdm" \
  cmp -s "$run/last.cdm" "$work/fixA/last.cdm"
check "... and its losses" sh -c "cut -d, -f1-3 '$run/losses.csv' >'$work/a'; \
  cut -d, -f1-3 '$work/fixA/losses.csv' >'$work/b'; cmp -s '$work/a' '$work/b'"

# ---- a rank killed mid-epoch ends the job; last.cdm is whole ----------------------------
run="$work/kill"
(two --out "$run" --epochs 400 --sample-epochs 400) >"$work/kill.out" 2>"$work/kill.err" &
pid=$!
while [ ! -e "$run/last.cdm" ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
sleep 0.3
victim=$(pgrep -P $pid | tail -n 1)
check "mpirun has two ranks" [ "$(pgrep -P $pid | wc -l)" -eq 2 ]
kill -9 "$victim"
t0=$(date +%s)
wait $pid
rc=$?
check "the job with a killed rank exits non-zero (exit $rc)" [ $rc -ne 0 ]
check "it ends within 60 s" [ $(($(date +%s) - t0)) -le 60 ]
check "mpirun names the killed rank" grep -q "exited on signal 9" "$work/kill.err"
check "after the kill, last.cdm loads" sh -c "'$cli' info '$run/last.cdm' >/dev/null"
e=$(epochs_in "$run/last.cdm")
check "after the kill, last.cdm holds whole epochs (${e:-?})" [ "${e:-0}" -ge 1 ]
(exec "$mpiexec" -np 2 "$cli" train --out "$run" --resume --epochs $((e + 1))) \
  >"$work/kill-resume.out" 2>&1
check "the killed run resumes to epoch $((e + 1))" [ "$(epochs_in "$run/last.cdm")" = $((e + 1)) ]

echo "test-mpi: Ctrl-C: $stopped; $pass passed, $fail failed"
[ "$fail" -eq 0 ] || { tail -n 20 "$work"/*.err; exit 1; }
