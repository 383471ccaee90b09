#!/bin/sh
# Usage: test-nan.sh COLDDIFF DATA_DIR PYTHON PYTHON_DIR
# colddiff train when training diverges: a run is resumed from a last.cdm
# whose Adam learning rate was rewritten to 1e300 (with cdm_format.py from
# PYTHON_DIR), so the first step after the resume would send the weights
# to infinity. The command must exit 1 with one line naming the epoch,
# batch and step and saying the checkpoints are kept, and leave best.cdm
# and last.cdm byte for byte as they were, still loadable.
set -u
cli=$1
data=$2
python=$3
pydir=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-nan-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $desc"; fail=$((fail + 1)); fi
}
tiny="--data $data --T 20 --batch 32 --train-limit 64 --cnn-hidden 8,8 --n-samples 4 \
  --sample-epochs 99 --threads 2 --out $work/run"

"$cli" train $tiny --epochs 2 >/dev/null 2>"$work/train.err"
check "the first two epochs train" [ $? -eq 0 ]
PYTHONPATH=$pydir "$python" - "$work/run/last.cdm" <<'PY'
import struct, sys
import cdm_format
path = sys.argv[1]
ck = cdm_format.read(path)
for i, (tag, flags, payload) in enumerate(ck.extra):
    if tag == b"ADAM":
        # u64 steps, u32 count, then (u32 key, f64 value); key 0 is lr.
        key, lr = struct.unpack_from("<Id", payload, 12)
        assert key == 0 and abs(lr - 2e-4) < 1e-12, (key, lr)
        payload = payload[:16] + struct.pack("<d", 1e300) + payload[24:]
        ck.extra[i] = (tag, flags, payload)
cdm_format.write(ck, path)
PY
check "last.cdm gets a learning rate of 1e300" [ $? -eq 0 ]
cp "$work/run/best.cdm" "$work/best.before"
cp "$work/run/last.cdm" "$work/last.before"

"$cli" train $tiny --epochs 4 --resume >"$work/resume.out" 2>"$work/resume.err"
check "a diverging run exits 1" [ $? -eq 1 ]
check "one line says it diverged" [ "$(grep -c "diverged" "$work/resume.err")" -eq 1 ]
check "it names epoch, batch and step" \
  grep -q "diverged: cd_trainer_fit: epoch 3, batch 1 of 2 (step 5): " "$work/resume.err"
check "it names the value that would overflow" grep -q "the step would make the value of" \
  "$work/resume.err"
check "it says the checkpoints are kept" \
  grep -q "kept the last good checkpoints .*best.cdm and .*last.cdm$" "$work/resume.err"
check "best.cdm is untouched" cmp -s "$work/best.before" "$work/run/best.cdm"
check "last.cdm is untouched" cmp -s "$work/last.before" "$work/run/last.cdm"
check "last.cdm still loads" "$cli" info "$work/run/last.cdm" >/dev/null
check "best.cdm still loads" "$cli" info "$work/run/best.cdm" >/dev/null
check "nothing says done" [ ! -s "$work/resume.out" ]
check "losses.csv keeps two epochs" [ "$(wc -l <"$work/run/losses.csv")" -eq 3 ]

echo "test-nan: $pass passed, $fail failed"
[ "$fail" -eq 0 ] || { cat "$work/train.err" "$work/resume.err"; exit 1; }
