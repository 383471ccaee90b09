#!/bin/sh
# Usage: test-resume.sh COLDDIFF DATA_DIR
# colddiff train --resume is the run that was started: it restores every
# recorded setting, finds a complete run complete, announces the settings
# it may change and refuses the others, trains further byte for byte as an
# uninterrupted run would, and stops within a batch when Ctrl-C comes
# during validation. Also --key=value, --val-limit, config.txt's numbers
# and the loss plot's tick labels.
set -u
cli=$1
data=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-resume-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $desc"; fail=$((fail + 1)); fi
}
epochs_in() { # the epoch count a checkpoint holds (colddiff info)
  "$cli" info "$1" 2>/dev/null | sed -n 's/^progress: .* optimiser steps, \([0-9]*\) epochs$/\1/p'
}
tiny="--T 20 --batch 32 --train-limit 64 --cnn-hidden 4,4 --n-samples 4 --sample-epochs 2 \
  --threads 2"

# ---- the recorded settings come back ----------------------------------------------------
"$cli" train --data="$data" --out="$work/run" $tiny --epochs=2 --lr=3e-4 >/dev/null 2>&1
check "train with --key=value exits 0" [ $? -eq 0 ]
check "config.txt records lr in its shortest form" grep -qx "lr = 0.0003" "$work/run/config.txt"
check "config.txt records the epochs" grep -qx "epochs = 2" "$work/run/config.txt"
cp -r "$work/run" "$work/run0"
"$cli" train --out "$work/run" --resume >"$work/done.out" 2>"$work/done.err"
check "resume of a complete run exits 0" [ $? -eq 0 ]
check "resume of a complete run says so" \
  grep -q "already at epoch 2 of 2; nothing to do" "$work/done.out"
check "resume of a complete run trains nothing" [ "$(epochs_in "$work/run/last.cdm")" = 2 ]
check "resume of a complete run changes no checkpoint" cmp -s "$work/run/last.cdm" "$work/run0/last.cdm"

# ---- --epochs on resume is the total, and the result is the uninterrupted run's ----------
"$cli" train --data "$data" --out "$work/straight" $tiny --epochs 3 --lr 3e-4 >/dev/null 2>&1
check "the uninterrupted 3-epoch run exits 0" [ $? -eq 0 ]
"$cli" train --out "$work/run" --resume --epochs 3 >/dev/null 2>"$work/more.err"
check "resume --epochs 3 exits 0" [ $? -eq 0 ]
check "resume --epochs 3 says the epochs changed" grep -q "epochs changed from 2 to 3" "$work/more.err"
check "resume --epochs 3 records it" grep -qx "epochs = 3" "$work/run/config.txt"
check "resume --epochs 3 reaches epoch 3" [ "$(epochs_in "$work/run/last.cdm")" = 3 ]
check "resumed last.cdm equals the uninterrupted run's" cmp -s "$work/run/last.cdm" "$work/straight/last.cdm"
# The losses match to the last digit; the timing columns are wall times.
cut -d, -f1-3 "$work/run/losses.csv" >"$work/losses-resumed.csv"
cut -d, -f1-3 "$work/straight/losses.csv" >"$work/losses-straight.csv"
check "resumed losses.csv equals the uninterrupted run's" cmp -s "$work/losses-resumed.csv" "$work/losses-straight.csv"

# ---- a changed learning rate is announced and used; fixed settings are refused ----------
cp -r "$work/run0" "$work/lr"
"$cli" train --out "$work/lr" --resume --epochs 3 --lr 0.003 >/dev/null 2>"$work/lr.err"
check "resume with a new lr exits 0" [ $? -eq 0 ]
check "resume says the lr changed" grep -q "lr changed from 0.0003 to 0.003" "$work/lr.err"
check "the new lr is recorded" grep -qx "lr = 0.003" "$work/lr/config.txt"
check "the new lr takes effect" [ "$(tail -n 1 "$work/lr/losses.csv")" != "$(tail -n 1 "$work/straight/losses.csv")" ]
for opt in "--seed 7" "--batch 16" "--train-limit 32" "--val-fraction 0.5" "--T 30" "--preset ddpm-cnn-bad"; do
  # shellcheck disable=SC2086 # the option and its value are two words
  "$cli" train --out "$work/run0" --resume --epochs 3 $opt >/dev/null 2>"$work/bad.err"
  check "resume refuses $opt (exit 2)" [ $? -eq 2 ]
  check "resume names ${opt%% *} and the recorded value" grep -q -e "${opt%% *} cannot change on --resume" "$work/bad.err"
done
check "a refused resume leaves the run at epoch 2" [ "$(epochs_in "$work/run0/last.cdm")" = 2 ]
"$cli" train --out "$work/run0" --resume --epochs 3 --T 20 --cnn-hidden 4,4 >/dev/null 2>&1
check "model options equal to the recorded ones are accepted" [ $? -eq 0 ]
"$cli" train --out "$work/run0" --resume --lr >/dev/null 2>&1
check "an option without its value is a usage error" [ $? -eq 2 ]
"$cli" train --out "$work/run0" --resume=1 >/dev/null 2>"$work/flag.err"
check "a flag given a value is refused" grep -q "takes no value" "$work/flag.err"

# ---- --lr-decay is recorded, kept on resume and changes the run ------------------------
"$cli" train --data "$data" --out "$work/decay" $tiny --epochs 2 --lr 3e-4 --lr-decay >/dev/null 2>&1
check "--lr-decay exits 0" [ $? -eq 0 ]
check "--lr-decay is recorded" grep -qx "lr_decay = 1" "$work/decay/config.txt"
check "--lr-decay changes the run" [ "$(tail -n 1 "$work/decay/losses.csv" | cut -d, -f1-3)" != \
  "$(sed -n 3p "$work/straight/losses.csv" | cut -d, -f1-3)" ]
"$cli" train --out "$work/decay" --resume --epochs 3 >/dev/null 2>&1
check "a resumed --lr-decay run exits 0" [ $? -eq 0 ]
check "the resume keeps --lr-decay" grep -qx "lr_decay = 1" "$work/decay/config.txt"

# ---- --val-limit ----------------------------------------------------------------------------
"$cli" train --data "$data" --out "$work/vl" $tiny --epochs 1 --val-limit 40 >/dev/null 2>"$work/vl.err"
check "--val-limit exits 0" [ $? -eq 0 ]
check "--val-limit limits the validation" grep -q "(validation 40)" "$work/vl.err"
check "--val-limit is recorded" grep -qx "val_limit = 40" "$work/vl/config.txt"

# ---- Ctrl-C during validation: out within a batch, and the resume keeps the bits ----------
# A UNet over 900 validation images and 128 training ones: validation is
# most of an epoch. Its start is announced on stderr, then SIGINT is sent.
big="--decoder unet --unet-dim 8 --T 20 --batch 128 --train-limit 128 --val-fraction 0.9 \
  --n-samples 1 --sample-epochs 99 --threads 2"
t0=$(date +%s%3N)
"$cli" train --data "$data" --out "$work/vref" $big --epochs 2 >/dev/null 2>&1
check "the uninterrupted validation run exits 0" [ $? -eq 0 ]
ref_ms=$(( $(date +%s%3N) - t0 ))
"$cli" train --data "$data" --out "$work/vint" $big --epochs 2 >/dev/null 2>"$work/vint.err" &
pid=$!
for i in $(seq 1 600); do
  grep -q "epoch 1/2: validating" "$work/vint.err" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
kill -INT $pid 2>/dev/null
sent=$(date +%s%3N)
wait $pid
rc=$?
took=$(( $(date +%s%3N) - sent ))
check "Ctrl-C during validation exits 130" [ $rc -eq 130 ]
check "Ctrl-C during validation says where it saved" grep -q "stopped; saved .*last.cdm" "$work/vint.err"
echo "Ctrl-C during validation: stopped $took ms after the signal (the whole run took $ref_ms)"
# A validation that ran to its end would have closed the epoch (and saved
# it) before the stop was seen at the next training batch: epoch 0 in
# last.cdm shows that the validation itself was cut short.
check "the stop came inside the validation (last.cdm holds no finished epoch)" [ "$(epochs_in "$work/vint/last.cdm")" = 0 ]
"$cli" train --out "$work/vint" --resume >/dev/null 2>&1
check "the run stopped in validation resumes" [ $? -eq 0 ]
check "it ends as the uninterrupted run" cmp -s "$work/vint/last.cdm" "$work/vref/last.cdm"

# ---- the loss plot: whole epochs, and values on its log axis ------------------------------
labels=$(sed -n 's/.*text-anchor="end">\([^<]*\)<\/text>.*/\1/p' "$work/straight/loss.svg")
check "the loss axis has labels" [ -n "$labels" ]
check "the loss axis labels are plain numbers" sh -c "printf '%s\n' \"$labels\" | grep -qvE '^[0-9.e+-]+$' && exit 1 || exit 0"
check "no label is a power written as 1e<fraction>" sh -c "printf '%s\n' \"$labels\" | grep -qE '^1e-?[0-9]+\.' && exit 1 || exit 0"
xlabels=$(sed -n 's/.*text-anchor="middle">\([0-9.]*\)<\/text>.*/\1/p' "$work/straight/loss.svg")
check "epoch ticks are whole numbers" sh -c "printf '%s\n' \"$xlabels\" | grep -q '\.' && exit 1 || exit 0"

echo "resume: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
