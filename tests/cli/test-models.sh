#!/bin/sh
# Usage: test-models.sh COLDDIFF DATA_DIR PYTHON PYTHON_DIR
# Model files on the command line: export of a training checkpoint to an
# inference model, info on each kind of file, sample/restore/eval from an
# inference model, sample from the shipped pretrained model, the messages for a decoder-only file, a decoder of
# another T (both made with cdm_format.py from PYTHON_DIR) and a PyTorch
# file, schedule --csv, eval --json, the out-of-range warning, and Ctrl-C
# during sampling.
set -u
cli=$1
data=$2
python=$3
pydir=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-models-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $desc"; fail=$((fail + 1)); fi
}
size() { wc -c <"$1" | tr -d ' '; }
# description, expected exit code, expected text of the one stderr line, command...
err() {
  desc=$1; want=$2; text=$3; shift 3
  "$@" >/dev/null 2>"$work/err.txt"
  got=$?
  check "$desc exits $want (got $got)" [ "$got" -eq "$want" ]
  check "$desc prints one line" [ "$(grep -vc '^colddiff: note:' "$work/err.txt")" -eq 1 ]
  check "$desc says: $text" grep -q -- "$text" "$work/err.txt"
}
tiny="--data $data --batch 32 --train-limit 64 --cnn-hidden 8,8 --n-samples 4 --sample-epochs 99 --threads 2"

"$cli" train $tiny --T 20 --ema 0.9 --epochs 1 --out "$work/run" >/dev/null 2>&1
check "train exits 0" [ $? -eq 0 ]

# ---- export ------------------------------------------------------------------------
"$cli" export --checkpoint "$work/run/best.cdm" --out "$work/model.cdm" >"$work/export.txt"
check "export exits 0" [ $? -eq 0 ]
check "export says it took the EMA weights" grep -q "EMA weights" "$work/export.txt"
check "the inference model is under half the checkpoint's size" \
  [ $(($(size "$work/model.cdm") * 2)) -lt "$(size "$work/run/best.cdm")" ]
"$cli" export --checkpoint "$work/model.cdm" --out "$work/model2.cdm" >/dev/null
check "export of an inference model copies it" cmp -s "$work/model.cdm" "$work/model2.cdm"
"$cli" export --checkpoint "$work/run/best.cdm" --out "$work/half.cdm" --weights float16 \
  >"$work/export.txt"
check "export --weights float16 exits 0" [ $? -eq 0 ]
check "export --weights float16 says so" grep -q "float16 weights" "$work/export.txt"
check "the float16 model is under 3/4 of the float32 one" \
  [ $(($(size "$work/half.cdm") * 4)) -lt $(($(size "$work/model.cdm") * 3)) ]
"$cli" sample --checkpoint "$work/half.cdm" --n 4 --cols 2 --out "$work/half.png" >/dev/null 2>&1
check "the float16 model samples" [ -s "$work/half.png" ]
"$cli" export --checkpoint "$work/run/best.cdm" --out "$work/half8.cdm" --weights float8 \
  >/dev/null 2>"$work/err.txt"
check "export --weights float8 is a usage error" [ $? -eq 2 ]
check "... naming the choices" grep -q "float16" "$work/err.txt"

# ---- files made by hand: decoder only, another T, PyTorch ----------------------------
PYTHONPATH=$pydir "$python" - "$work" <<'PY'
import sys
import cdm_format
work = sys.argv[1]
c = cdm_format.read(work + "/model.cdm")
for k in [k for k in c.conf if not k.startswith("decoder.")]:
    del c.conf[k]
cdm_format.write(c, work + "/decoder.cdm")
c = cdm_format.read(work + "/model.cdm")
c.conf["decoder.T"] = 200
cdm_format.write(c, work + "/t200.cdm")
PY
check "cdm_format.py wrote the hand-made files" [ -s "$work/decoder.cdm" ] && [ -s "$work/t200.cdm" ]
printf 'PK\003\004 a torch.save zip' >"$work/model.pth"

# ---- info on each kind ---------------------------------------------------------------
"$cli" info "$work/run/best.cdm" >"$work/info-ckpt.txt"
check "info on a checkpoint exits 0" [ $? -eq 0 ]
check "info names a training checkpoint" grep -q "^kind: training checkpoint" "$work/info-ckpt.txt"
check "info says sampling uses the EMA" grep -q "the EMA weights" "$work/info-ckpt.txt"
"$cli" info "$work/model.cdm" >"$work/info-model.txt"
check "info on an inference model exits 0" [ $? -eq 0 ]
check "info names an inference model" grep -q "^kind: inference model" "$work/info-model.txt"
check "info gives the decoder's T" grep -q "^decoder: cnn.*trained for T = 20" "$work/info-model.txt"
check "info gives the degradation and T" grep -q "^degradation: noise, T = 20" "$work/info-model.txt"
check "info gives the schedule" grep -q "^schedule: beta_1 = 0.0001, beta_T = 0.02" "$work/info-model.txt"
"$cli" info "$work/decoder.cdm" >"$work/info-dec.txt"
check "info on a decoder-only file exits 0" [ $? -eq 0 ]
check "info names a decoder-only file and the way out" \
  grep -q "^kind: decoder only.*colddiff export" "$work/info-dec.txt"
err "info on a PyTorch file" 1 "examples/python/convert_torch.py" "$cli" info "$work/model.pth"

# ---- sample, restore, eval from the inference model -----------------------------------
"$cli" sample --checkpoint "$work/model.cdm" --n 4 --seed 3 --out "$work/s-model.png" >/dev/null 2>&1
check "sample from an inference model exits 0" [ $? -eq 0 ]
"$cli" sample --checkpoint "$work/run/best.cdm" --n 4 --seed 3 --out "$work/s-ckpt.png" >/dev/null 2>&1
check "the model and its checkpoint sample alike (EMA weights)" \
  cmp -s "$work/s-model.png" "$work/s-ckpt.png"
"$cli" restore --checkpoint "$work/model.cdm" --data "$data" --n 2 --out "$work/r.png" >/dev/null 2>&1
check "restore from an inference model exits 0" [ $? -eq 0 ]
"$cli" eval --checkpoint "$work/model.cdm" --data "$data" --n 4 --fd-samples 4 --sampler ddim \
  --steps 5 --json "$work/eval.json" >/dev/null 2>&1
check "eval from an inference model exits 0" [ $? -eq 0 ]
check "eval --json has no nan or inf" sh -c "! grep -qiE 'nan|inf' '$work/eval.json'"
check "eval --json is JSON" "$python" -c "import json, sys; json.load(open(sys.argv[1]))" "$work/eval.json"
err "sample from a decoder-only file" 1 "holds a decoder only" \
  "$cli" sample --checkpoint "$work/decoder.cdm" --out "$work/x.png"
err "sample with a decoder of another T" 1 "trained for T = 200, the degradation has T = 20" \
  "$cli" sample --checkpoint "$work/t200.cdm" --out "$work/x.png"
err "eval of a PyTorch file" 1 "convert_torch.py" \
  "$cli" eval --checkpoint "$work/model.pth" --data "$data"
check "nothing was written by the failures" [ ! -e "$work/x.png" ]

# ---- the pretrained model that ships with the library --------------------------------
env -u COLDDIFF_MODEL "$cli" sample --n 4 --steps 5 --out "$work/shipped.png" >/dev/null 2>"$work/shipped.err"
check "sample without --checkpoint (the shipped model) exits 0" [ $? -eq 0 ]
check "sample without --checkpoint writes the grid" [ -s "$work/shipped.png" ]
check "the shipped model samples inside the data range" [ ! -s "$work/shipped.err" ]
err "a COLDDIFF_MODEL that does not exist" 1 "/nonexistent/m.cdm" \
  env COLDDIFF_MODEL=/nonexistent/m.cdm "$cli" sample --n 2 --out "$work/x.png"

# ---- DDIM defaults and the range warning ---------------------------------------------
"$cli" sample --checkpoint "$work/model.cdm" --n 8 --sampler ddim --out "$work/ddim.png" \
  >/dev/null 2>"$work/ddim.err"
check "DDIM with its defaults exits 0" [ $? -eq 0 ]
check "DDIM clips by default: no range warning" sh -c "! grep -q 'outside the data range' '$work/ddim.err'"
"$cli" sample --checkpoint "$work/model.cdm" --n 8 --sampler ddim --no-clip \
  --out "$work/noclip.png" >/dev/null 2>"$work/noclip.err"
check "DDIM --no-clip exits 0" [ $? -eq 0 ]
check "an untrained model without clipping is warned about" \
  grep -q "^colddiff: warning: .*% of the samples' pixels lie more than 0.05 outside the data range \[-0.5, 0.5\]" \
  "$work/noclip.err"
check "the warning is one line" [ "$(wc -l <"$work/noclip.err")" -eq 1 ]

# ---- schedule --csv --------------------------------------------------------------------
"$cli" schedule --T 20 --csv "$work/flags.csv" >/dev/null
check "schedule --csv exits 0" [ $? -eq 0 ]
check "schedule --csv: header and T + 1 rows" [ "$(wc -l <"$work/flags.csv")" -eq 22 ]
check "schedule --csv header" [ "$(head -1 "$work/flags.csv")" = "t,beta,alpha_bar" ]
check "schedule --csv starts at t = 0" [ "$(sed -n 2p "$work/flags.csv")" = "0,0,1" ]
"$cli" schedule --checkpoint "$work/model.cdm" --csv "$work/model.csv" --out "$work/model.svg" >/dev/null
check "schedule --checkpoint exits 0" [ $? -eq 0 ]
check "a model's schedule is the one it was trained with" cmp -s "$work/flags.csv" "$work/model.csv"
check "schedule --checkpoint draws it" [ "$(grep -c '<polyline' "$work/model.svg")" -eq 1 ]
err "schedule without an output" 2 "--out FILE.svg or --csv" "$cli" schedule --T 20

# ---- Ctrl-C stops a long chain: exit 130, nothing written ---------------------------------
"$cli" train $tiny --T 1000 --train-limit 32 --epochs 1 --out "$work/long" >/dev/null 2>&1
check "train T = 1000 exits 0" [ $? -eq 0 ]
"$cli" sample --checkpoint "$work/long/best.cdm" --sampler ddpm --n 2000 --threads 1 --out "$work/long.png" \
  >/dev/null 2>"$work/int.err" &
pid=$!
# Signals sent before the handler is in place are ignored (a background
# job's SIGINT is), so send until the process is gone; a chain that ran to
# its end would take minutes.
for i in $(seq 1 300); do
  kill -0 $pid 2>/dev/null || break
  [ "$i" -gt 2 ] && kill -INT $pid 2>/dev/null
  sleep 0.1
done
kill -KILL $pid 2>/dev/null
wait $pid
check "Ctrl-C during sample exits 130" [ $? -eq 130 ]
check "Ctrl-C says so in one line" grep -q "^colddiff: interrupted (Ctrl-C) while sampling" "$work/int.err"
check "Ctrl-C writes no grid" [ ! -e "$work/long.png" ]

"$cli" export --help >"$work/help.txt"
check "export --help shows usage" grep -q "^usage: colddiff export" "$work/help.txt"

echo "models: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
