#!/bin/sh
# Usage: test-cli.sh COLDDIFF DATA_DIR
# Every colddiff subcommand end to end on the tests/data slice at tiny
# sizes, asserting on what the files contain, plus the error exits.
set -u
cli=$1
data=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/colddiff-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
skip=0
check() { # description, then a command that must succeed
  desc=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $desc"; fail=$((fail + 1)); fi
}
differ() { ! cmp -s "$1" "$2"; }
is_png() { [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = 89504e470d0a1a0a ]; }
be32() { od -An -tu1 -j "$2" -N4 "$1" | awk '{print $1*16777216 + $2*65536 + $3*256 + $4}'; }
tiny="--data $data --T 20 --batch 32 --train-limit 64 --cnn-hidden 8,8 --n-samples 8 --threads 2"

# ---- train --------------------------------------------------------------------
"$cli" train $tiny --out "$work/run" --epochs 2 --sample-epochs 1 >"$work/train.out" 2>"$work/train.err"
check "train exits 0" [ $? -eq 0 ]
for f in best.cdm last.cdm losses.csv loss.svg config.txt samples_epoch001.png \
         samples_epoch002.png restore_epoch001.png restore_epoch002.png; do
  check "train writes $f" [ -s "$work/run/$f" ]
done
check "losses.csv has a header and two epochs" [ "$(wc -l <"$work/run/losses.csv")" -eq 3 ]
check "losses.csv header" [ "$(head -1 "$work/run/losses.csv")" = "epoch,train_loss,val_loss,seconds,images_per_sec" ]
check "losses.csv times each epoch" awk -F, 'NR > 1 && !($4 + 0 > 0 && $5 + 0 > 0) { exit 1 }' "$work/run/losses.csv"
check "losses are finite numbers" awk -F, 'NR > 1 && !($2 + 0 > 0 && $3 + 0 > 0) { exit 1 }' "$work/run/losses.csv"
check "loss.svg is an SVG with two curves" [ "$(grep -c '<polyline' "$work/run/loss.svg")" -eq 2 ]
check "config.txt records the model" grep -q "^T = 20$" "$work/run/config.txt"
check "config.txt records the seed" grep -q "^seed = 42$" "$work/run/config.txt"
check "sample grid is a PNG" is_png "$work/run/samples_epoch001.png"
# 8 columns of 28-pixel tiles with 2-pixel borders: 8 * 30 + 2.
check "sample grid width" [ "$(be32 "$work/run/samples_epoch001.png" 16)" -eq 242 ]
# restoration: 8 rows of x, 3 forward, 3 x-hat and the result = 8 columns.
check "restoration figure height" [ "$(be32 "$work/run/restore_epoch002.png" 20)" -eq 242 ]
check "train reports where it wrote" grep -q "best model" "$work/train.out"

# ---- resume: continuing a finished run to 3 epochs adds one row -------------------
"$cli" train $tiny --out "$work/run" --epochs 3 --resume >/dev/null 2>"$work/resume.err"
check "resume exits 0" [ $? -eq 0 ]
check "resume says where it starts" grep -q "resuming .* after epoch 2" "$work/resume.err"
check "resume appends epoch 3" [ "$(tail -1 "$work/run/losses.csv" | cut -d, -f1)" = 3 ]
check "resume keeps epochs 1 and 2" [ "$(wc -l <"$work/run/losses.csv")" -eq 4 ]

# ---- --val-fraction 0: training without validation ----------------------------------
"$cli" train $tiny --out "$work/noval" --epochs 2 --sample-epochs 1 --val-fraction 0 \
  >/dev/null 2>"$work/noval.err"
check "train --val-fraction 0 exits 0" [ $? -eq 0 ]
check "train --val-fraction 0 keeps a best.cdm" [ -s "$work/noval/best.cdm" ]
check "train --val-fraction 0 restores training images" [ -s "$work/noval/restore_epoch002.png" ]
check "train --val-fraction 0 says there is no validation" grep -q "no validation split" "$work/noval.err"
check "train --val-fraction 0 records both epochs" [ "$(wc -l <"$work/noval/losses.csv")" -eq 3 ]
# ---- train on a folder of PNG images -----------------------------------------
# Two class folders of 28 x 28 greyscale PNGs, written with the standard
# library by examples/data/make_shapes.py's write_png.
examples_data="$(dirname "$0")/../../examples/data"
mkdir -p "$work/pngs/a" "$work/pngs/b" "$work/nopngs"
python3 - "$work/pngs" "$examples_data" <<'EOF_PY'
import sys
sys.path.insert(0, sys.argv[2])
from make_shapes import write_png
for i in range(20):
    px = bytes((11 * i + 7 * y + 3 * x) % 256 for y in range(28) for x in range(28))
    write_png(f"{sys.argv[1]}/{'ab'[i % 2]}/{i:02d}.png", 28, 28, 1, px)
EOF_PY
"$cli" train --data "$work/pngs" --out "$work/pngrun" --T 20 --batch 8 --cnn-hidden 8,8 \
  --n-samples 8 --threads 2 --epochs 1 >/dev/null 2>"$work/png.err"
check "train on a PNG folder exits 0" [ $? -eq 0 ]
check "train on a PNG folder writes its model" [ -s "$work/pngrun/last.cdm" ]
"$cli" train --data "$work/nopngs" --out "$work/nopngrun" --epochs 1 >/dev/null 2>"$work/png.err"
check "train on a folder without images fails" [ $? -ne 0 ]
check "the error says there is no PNG file" grep -q "no PNG file" "$work/png.err"

# ---- colour data of another size -----------------------------------------------
# 24 RGB 16 x 16 PNGs in two class folders: tiny UNet and CNN runs, whose
# grids, samples, restorations and metrics must follow the data's shape.
mkdir -p "$work/rgb/a" "$work/rgb/b"
python3 - "$work/rgb" "$examples_data" <<'EOF_PY'
import sys
sys.path.insert(0, sys.argv[2])
from make_shapes import write_png
for i in range(24):
    px = bytes(v for y in range(16) for x in range(16) for v in
               ((13 * i + 9 * y) % 256, (7 * x + 5 * i) % 256, (3 * x * y) % 256))
    write_png(f"{sys.argv[1]}/{'ab'[i % 2]}/{i:02d}.png", 16, 16, 3, px)
EOF_PY
colour_type() { od -An -tu1 -j 25 -N1 "$1" | tr -d ' '; }
rgb_png() { # file, width, height
  is_png "$1" && [ "$(colour_type "$1")" -eq 2 ] && [ "$(be32 "$1" 16)" -eq "$2" ] &&
    [ "$(be32 "$1" 20)" -eq "$3" ]
}
for dec in unet cnn; do
  "$cli" train --data "$work/rgb" --out "$work/rgb-$dec" --decoder $dec --unet-dim 4 \
    --unet-mults 1,2 --unet-heads 1 --unet-head-dim 4 --cnn-hidden 8,8 --T 10 --batch 8 \
    --n-samples 4 --threads 2 --epochs 1 --val-fraction 0.5 >/dev/null 2>"$work/rgb.err"
  check "RGB $dec: train exits 0" [ $? -eq 0 ]
  check "RGB $dec: sample grid is RGB, 4 tiles of 16 x 16" \
    rgb_png "$work/rgb-$dec/samples_epoch001.png" 74 20
  check "RGB $dec: restoration figure is RGB, 8 columns" \
    rgb_png "$work/rgb-$dec/restore_epoch001.png" 146 146
  "$cli" sample --checkpoint "$work/rgb-$dec/last.cdm" --n 6 --cols 3 \
    --out "$work/rgb-$dec.png" >/dev/null 2>&1
  check "RGB $dec: colddiff sample draws 3 x 16 x 16 images" rgb_png "$work/rgb-$dec.png" 56 38
done
"$cli" restore --checkpoint "$work/rgb-unet/last.cdm" --data "$work/rgb" --n 2 --times 5,10 \
  --out "$work/rgb-r.png" >/dev/null 2>"$work/rgb.err"
check "RGB restore from the validation split" rgb_png "$work/rgb-r.png" 110 38
check "RGB restore says it uses the validation split" grep -q "no test split" "$work/rgb.err"
check "... the one the run held out, from its config.txt" \
  grep -q "held out (50%, seed 42, from $work/rgb-unet/config.txt)" "$work/rgb.err"
"$cli" restore --checkpoint "$work/rgb-unet/last.cdm" --data "$work/rgb" --n 13 --times 5 \
  --out "$work/rgb-r13.png" >/dev/null 2>"$work/rgb.err"
check "restore reads the run's 12 held-out images, not 20% of the folder" \
  grep -q "split has 12 images, fewer than the 13 asked for" "$work/rgb.err"
mkdir -p "$work/rgb-alone" && cp "$work/rgb-unet/last.cdm" "$work/rgb-alone/"
"$cli" eval --checkpoint "$work/rgb-alone/last.cdm" --data "$work/rgb" --n 13 \
  >/dev/null 2>"$work/rgb.err"
check "a checkpoint without its config.txt: 20% held out, seed 42" \
  grep -q "validation split (20%, seed 42: the images colddiff train holds out by default)" \
  "$work/rgb.err"
sed 's/^val_fraction = .*/val_fraction = 0/' "$work/rgb-unet/config.txt" >"$work/rgb-alone/config.txt"
"$cli" eval --checkpoint "$work/rgb-alone/last.cdm" --data "$work/rgb" --n 13 \
  >/dev/null 2>"$work/rgb.err"
check "a run that held out nothing: a note that 20% includes its training images" \
  grep -q "records val_fraction = 0: the run held out no images" "$work/rgb.err"
# --map range: the data range [-0.5, 0.5], not each image's percentiles
# (unclipped, so that the samples do not fill the range either way).
for map in percentile range; do
  "$cli" sample --checkpoint "$work/rgb-unet/last.cdm" --n 6 --cols 3 --no-clip --map $map \
    --out "$work/rgb-$map.png" >/dev/null 2>&1
  check "sample --map $map" rgb_png "$work/rgb-$map.png" 56 38
done
check "sample --map range maps the pixels otherwise" differ "$work/rgb-range.png" "$work/rgb-percentile.png"
"$cli" restore --checkpoint "$work/rgb-unet/last.cdm" --data "$work/rgb" --n 2 --times 5,10 \
  --map range --out "$work/rgb-r2.png" >/dev/null 2>&1
check "restore --map range" rgb_png "$work/rgb-r2.png" 110 38
check "restore --map range maps the pixels otherwise" differ "$work/rgb-r2.png" "$work/rgb-r.png"
"$cli" grid --data "$work/rgb" --n 3 --out "$work/rgb-g.png" >/dev/null 2>&1
check "RGB grid of dataset images" rgb_png "$work/rgb-g.png" 56 20
"$cli" eval --checkpoint "$work/rgb-unet/last.cdm" --data "$work/rgb" --n 3 \
  --json "$work/rgb.json" >"$work/rgb-eval.txt" 2>/dev/null
check "RGB eval exits 0" [ $? -eq 0 ]
for k in "test loss" RMSE SSIM PSNR "classifier metrics skipped"; do
  check "RGB eval prints $k" grep -q "^$k" "$work/rgb-eval.txt"
done
check "RGB eval names the shape" grep -q "these are 3 x 16 x 16" "$work/rgb-eval.txt"
check "RGB eval JSON: no classifier metrics" grep -q '"classifier_metrics": false' "$work/rgb.json"
check "RGB eval JSON: FD is null" grep -q '"fd": null' "$work/rgb.json"

# ---- class-conditional: train on the two class folders, ask for a class ----------
"$cli" train --data "$work/rgb" --out "$work/rgb-cond" --conditional --label-dropout 0.2 \
  --decoder unet --unet-dim 4 --unet-mults 1,2 --unet-heads 1 --unet-head-dim 4 --T 10 \
  --batch 8 --n-samples 4 --threads 2 --epochs 1 >/dev/null 2>"$work/cond.err"
check "conditional: train exits 0" [ $? -eq 0 ]
check "conditional: config.txt records it" grep -q "^conditional = 1" "$work/rgb-cond/config.txt"
check "conditional: and the dropout rate" grep -q "^label_dropout = 0.2" "$work/rgb-cond/config.txt"
"$cli" sample --checkpoint "$work/rgb-cond/last.cdm" --class 1 --guidance 3 --n 4 --cols 2 \
  --out "$work/cond1.png" >/dev/null 2>&1
check "conditional: sample --class 1 --guidance 3" rgb_png "$work/cond1.png" 38 38
"$cli" sample --checkpoint "$work/rgb-cond/last.cdm" --class-rows --n 4 --cols 2 \
  --out "$work/cond-rows.png" >/dev/null 2>&1
check "conditional: sample --class-rows" rgb_png "$work/cond-rows.png" 38 38
"$cli" sample --checkpoint "$work/rgb-cond/last.cdm" --class 2 --n 4 \
  --out "$work/cond2.png" >/dev/null 2>"$work/cond.err"
check "conditional: a class the model lacks is refused" [ $? -eq 2 ]
check "conditional: ... naming the class count" grep -q "the model has 2 classes" "$work/cond.err"
"$cli" sample --checkpoint "$work/rgb-unet/last.cdm" --class 0 --n 4 \
  --out "$work/cond0.png" >/dev/null 2>"$work/cond.err"
check "conditional: --class on an unconditional model is refused" [ $? -eq 2 ]
check "conditional: ... saying how to get one" grep -q "train one with --conditional" \
  "$work/cond.err"
mkdir -p "$work/flat" && cp "$work/rgb/a/"*.png "$work/flat/"
"$cli" train --data "$work/flat" --out "$work/flat-cond" --conditional --epochs 1 \
  >/dev/null 2>"$work/cond.err"
check "conditional: data without classes are refused" grep -q "needs data with classes" \
  "$work/cond.err"
# Without --class, a class-conditional model's grid takes one class per row
# (as --class-rows) and a row per class; --class -1 asks for the "no class"
# label instead. The tiny model's labels barely change its pictures, so the
# command's own account of what it drew is what is checked.
"$cli" sample --checkpoint "$work/rgb-cond/last.cdm" --out "$work/cond-n.png" >"$work/cond.out" 2>&1
check "conditional: sample without --class draws one class per row" \
  grep -q "(classes 0..1, one per row)" "$work/cond.out"
check "conditional: ... a row of 8 per class when --n is not given" \
  grep -q "wrote 16 samples" "$work/cond.out"
check "conditional: ... and the grid has those 2 rows" rgb_png "$work/cond-n.png" 146 38
"$cli" sample --checkpoint "$work/rgb-cond/last.cdm" --class -1 --n 4 --cols 2 \
  --out "$work/cond-none.png" >"$work/cond.out" 2>&1
check "conditional: sample --class -1 draws with no class" grep -q "(no class)" "$work/cond.out"
check "conditional: ... a grid of the 4 asked for" rgb_png "$work/cond-none.png" 38 38
"$cli" sample --checkpoint "$work/rgb-cond/last.cdm" --class 1 --n 4 --out "$work/cond1b.png" \
  >"$work/cond.out" 2>&1
check "conditional: sample --class 1 says so" grep -q "wrote 4 samples to .* (class 1)" "$work/cond.out"
"$cli" train --data "$work/rgb" --out "$work/rgb-cond8" --conditional --decoder unet --unet-dim 4 \
  --unet-mults 1,2 --unet-heads 1 --unet-head-dim 4 --T 10 --batch 8 --threads 2 --epochs 1 \
  >/dev/null 2>&1
check "conditional: train's grid without --n-samples has a row of 8 per class" \
  rgb_png "$work/rgb-cond8/samples_epoch001.png" 146 38
# The fast preset is class-conditional where the data has classes, and
# falls back to no labels where they have none.
"$cli" train --preset fast --data "$work/flat" --out "$work/flat-fast" --epochs 1 --T 10 \
  --n-samples 4 --grid-steps 2 --threads 2 >/dev/null 2>"$work/cond.err"
check "fast preset on data without classes: exits 0" [ $? -eq 0 ]
check "... with a note" grep -q "the data has no classes; the model draws without labels" "$work/cond.err"
check "... and records no labels" grep -qx "conditional = 0" "$work/flat-fast/config.txt"
"$cli" train --preset fast --data "$work/flat" --out "$work/flat-fast" --epochs 2 --T 10 --resume \
  >/dev/null 2>"$work/cond.err"
check "... and resumes with the preset named again" [ $? -eq 0 ]
"$cli" train --data "$work/flat" --out "$work/flat-both" --conditional --unconditional \
  >/dev/null 2>"$work/cond.err"
check "--conditional with --unconditional is refused" [ $? -eq 2 ]

# ---- examples/data/make_shapes.py ------------------------------------------------------
# The walk-through's data (docs/walkthrough-rgb-folder.md), a few images a class.
python3 "$examples_data/make_shapes.py" "$work/shapes" --n 4 --seed 3 >/dev/null
check "make_shapes writes three class folders of 4 images" \
  [ "$(ls "$work/shapes/circle" "$work/shapes/square" "$work/shapes/triangle" | grep -c '\.png$')" -eq 12 ]
python3 "$examples_data/make_shapes.py" "$work/shapes2" --n 4 --seed 3 >/dev/null
check "make_shapes: a seed gives the same files" cmp -s "$work/shapes/triangle/0003.png" "$work/shapes2/triangle/0003.png"
"$cli" grid --data "$work/shapes" --split train --n 9 --cols 9 --out "$work/shapes.png" >/dev/null 2>&1
check "the shapes load as 3 x 32 x 32" rgb_png "$work/shapes.png" 308 36

# ---- --channels and --size: shapes of two sizes, read as grey 32 x 32 crops -----
python3 "$examples_data/make_shapes.py" "$work/mixed" --n 4 --sizes 40x36,36x44 >/dev/null
"$cli" train --data "$work/mixed" --out "$work/mixed-run" --epochs 1 --T 10 --batch 4 \
  --cnn-hidden 4 --n-samples 4 --threads 2 >/dev/null 2>"$work/mixed.err"
check "mixed sizes without --size are refused" grep -q "must share one size" "$work/mixed.err"
check "... with a note on --size" grep -q "note: --size N centre-crops" "$work/mixed.err"
"$cli" train --data "$work/mixed" --out "$work/mixed-run" --epochs 1 --T 10 --batch 4 \
  --cnn-hidden 4 --n-samples 4 --threads 2 --channels 1 --size 32 >/dev/null 2>"$work/mixed.err"
check "--channels 1 --size 32: train exits 0" [ $? -eq 0 ]
check "--channels 1 --size 32: recorded in config.txt" grep -q "^size = 32" "$work/mixed-run/config.txt"
"$cli" train --out "$work/mixed-run" --size 30 --epochs 2 --resume >/dev/null 2>"$work/mixed.err"
check "--size cannot change on --resume" [ $? -eq 2 ]
"$cli" sample --checkpoint "$work/mixed-run/last.cdm" --n 2 --cols 2 --out "$work/mixed.png" \
  >/dev/null 2>&1
check "--channels 1 --size 32: grey samples" [ "$(colour_type "$work/mixed.png")" -eq 0 ]
check "--channels 1 --size 32: two 32 x 32 tiles across" [ "$(be32 "$work/mixed.png" 16)" -eq 70 ]
check "--channels 1 --size 32: one tile down" [ "$(be32 "$work/mixed.png" 20)" -eq 36 ]
"$cli" eval --checkpoint "$work/mixed-run/last.cdm" --data "$work/mixed" --channels 1 --size 32 \
  --n 100 >/dev/null 2>"$work/mixed.err"
check "eval --n above the validation split gives the split's size" \
  grep -q "validation split has 2 images, fewer than the 100 asked for (--n)" "$work/mixed.err"
"$cli" train --data "$data" --out "$work/idx-size" --size 8 --epochs 1 >/dev/null \
  2>"$work/mixed.err"
check "--size on MNIST files is refused" grep -q "apply to folders of PNG images" "$work/mixed.err"

"$cli" train --help >"$work/help.txt"
check "train --help explains --val-fraction 0" grep -q "val-fraction.*0: none, best.cdm" "$work/help.txt"

# ---- --preset fast: the recipe docs/fast-preset.md records --------------------------
# A shortened run (small T, a few images); every other setting is the preset's.
"$cli" train --preset fast --data "$data" --out "$work/fast" --train-limit 32 --val-limit 16 \
  --epochs 1 --n-samples 4 --grid-steps 2 --T 20 --threads 2 >/dev/null 2>"$work/fast.err"
check "train --preset fast exits 0" [ $? -eq 0 ]
for kv in "batch = 32" "lr = 0.002" "lr_warmup = 200" "clip_norm = 1" "ema = 0.999" \
          "ema_warmup = 1" "val_fraction = 0.05" "val_limit = 16" "decoder = unet" \
          "schedule = cosine" "unet_dim = 16" "unet_heads = 2" "unet_head_dim = 16" \
          "prediction = v" "conditional = 1"; do
  check "the fast preset sets $kv" grep -qx "$kv" "$work/fast/config.txt"
done
"$cli" train --preset fast --unconditional --data "$data" --out "$work/fast-u" --train-limit 32 \
  --val-limit 16 --epochs 1 --n-samples 4 --grid-steps 2 --T 20 --threads 2 >/dev/null 2>&1
check "--unconditional turns the fast preset's labels off" \
  grep -qx "conditional = 0" "$work/fast-u/config.txt"

# ---- Ctrl-C saves last.cdm and exits 130 --------------------------------------------
"$cli" train --data "$data" --T 20 --batch 8 --cnn-hidden 8,8 --threads 1 --epochs 1000 \
  --sample-epochs 999 --n-samples 1 --out "$work/int" >/dev/null 2>"$work/int.err" &
pid=$!
for i in $(seq 1 100); do [ -s "$work/int/losses.csv" ] && break; sleep 0.2; done
kill -INT $pid
wait $pid
check "Ctrl-C exits 130" [ $? -eq 130 ]
check "Ctrl-C leaves last.cdm" [ -s "$work/int/last.cdm" ]
check "Ctrl-C says how to resume" grep -q -- "--resume" "$work/int.err"

# ---- fetch-mnist, offline: a file:// mirror holding the slice as all four files ------
mkdir -p "$work/mirror"
for n in train-images-idx3-ubyte t10k-images-idx3-ubyte; do cp "$data/t10k-images-idx3-ubyte.gz" "$work/mirror/$n.gz"; done
for n in train-labels-idx1-ubyte t10k-labels-idx1-ubyte; do cp "$data/t10k-labels-idx1-ubyte.gz" "$work/mirror/$n.gz"; done
: >"$work/md5"
for n in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  echo "$(gzip -dc "$work/mirror/$n.gz" | md5sum | cut -d' ' -f1)  $n" >>"$work/md5"
done
CD_MNIST_NO_NPM=1 CD_MNIST_MIRRORS="file://$work/mirror/" CD_MNIST_MD5_FILE="$work/md5" \
  "$cli" fetch-mnist --dir "$work/mnist" >/dev/null 2>&1
check "fetch-mnist exits 0 from a local mirror" [ $? -eq 0 ]
check "fetch-mnist writes the four files" [ "$(ls "$work/mnist" | grep -c idx)" -eq 4 ]
"$cli" grid --data "$work/mnist" --n 4 --out "$work/fetched.png" >/dev/null 2>&1
check "fetched files load" is_png "$work/fetched.png"
CD_MNIST_NO_NPM=1 CD_MNIST_MIRRORS="file://$work/nowhere/" CD_MNIST_MD5_FILE="$work/md5" \
  "$cli" fetch-mnist --dir "$work/mnist2" >/dev/null 2>&1
check "fetch-mnist fails without a source" [ $? -ne 0 ]

# ---- info, sample, restore, schedule ------------------------------------------------
"$cli" info "$work/run/last.cdm" >"$work/info.txt"
check "info exits 0" [ $? -eq 0 ]
check "info names the decoder" grep -q "^decoder: cnn" "$work/info.txt"
check "info gives T" grep -q "T = 20" "$work/info.txt"
check "info gives the epochs" grep -q "3 epochs" "$work/info.txt"

"$cli" sample --checkpoint "$work/run/best.cdm" --n 6 --cols 3 --out "$work/s.png" >/dev/null
check "sample exits 0" [ $? -eq 0 ]
check "sample grid: 3 columns" [ "$(be32 "$work/s.png" 16)" -eq 92 ]
check "sample grid: 2 rows" [ "$(be32 "$work/s.png" 20)" -eq 62 ]
"$cli" sample --checkpoint "$work/run/best.cdm" --n 4 --sampler ddim --steps 5 --eta 0.5 \
  --seed 3 --out "$work/d.png" >/dev/null
check "DDIM sampling exits 0" [ $? -eq 0 ]
"$cli" sample --checkpoint "$work/run/best.cdm" --n 4 --sampler ddim --steps 5 --eta 0.5 \
  --seed 3 --no-clip --out "$work/dc.png" >/dev/null 2>&1
check "DDIM sampling with --no-clip exits 0" [ $? -eq 0 ]
check "clipping (the default) changes the samples" differ "$work/d.png" "$work/dc.png"
"$cli" sample --checkpoint "$work/run/best.cdm" --n 4 --sampler ddim --steps 5 --eta 0.5 \
  --seed 3 --clip --out "$work/dc2.png" >/dev/null
check "--clip is accepted and is the default" cmp -s "$work/d.png" "$work/dc2.png"
"$cli" sample --checkpoint "$work/run/best.cdm" --n 4 --ema --out "$work/e.png" >/dev/null \
  2>"$work/e.err"
check "sample --ema without an EMA takes the weights as they are" [ $? -eq 0 ]
"$cli" train $tiny --out "$work/ema" --epochs 2 --ema 0.9 --sample-epochs 1 >/dev/null 2>&1
check "train --ema exits 0" [ $? -eq 0 ]
"$cli" train $tiny --out "$work/noema" --epochs 2 --sample-epochs 1 >/dev/null 2>&1
check "grids of an EMA run show the EMA weights" \
  differ "$work/ema/samples_epoch001.png" "$work/noema/samples_epoch001.png"
for run in ema noema; do
  "$cli" sample --checkpoint "$work/$run/last.cdm" --n 4 --seed 3 --out "$work/raw-$run.png" \
    --no-ema >/dev/null 2>&1
done
check "training goes on from the raw weights after an EMA grid" \
  cmp -s "$work/raw-ema.png" "$work/raw-noema.png"
"$cli" sample --checkpoint "$work/ema/last.cdm" --n 4 --seed 3 --out "$work/e1.png" >/dev/null 2>&1
check "sample (EMA weights by default) exits 0" [ $? -eq 0 ]
"$cli" sample --checkpoint "$work/ema/last.cdm" --n 4 --seed 3 --no-ema --out "$work/e2.png" \
  >/dev/null 2>&1
check "EMA weights give other samples than --no-ema" differ "$work/e1.png" "$work/e2.png"
for eta in 0 1; do
  "$cli" train $tiny --out "$work/eta$eta" --epochs 1 --sample-epochs 1 --grid-sampler ddim \
    --grid-steps 5 --grid-eta $eta >/dev/null 2>&1
  check "train --grid-eta $eta exits 0" [ $? -eq 0 ]
done
check "grid eta 1 draws other samples than eta 0" \
  differ "$work/eta0/samples_epoch001.png" "$work/eta1/samples_epoch001.png"
"$cli" sample --checkpoint "$work/run/best.cdm" --n 4 --seed 3 --out "$work/d1.png" >/dev/null
"$cli" sample --checkpoint "$work/run/best.cdm" --n 4 --seed 3 --out "$work/d2.png" >/dev/null
check "sampling is reproducible for a seed" cmp -s "$work/d1.png" "$work/d2.png"

"$cli" restore --checkpoint "$work/run/best.cdm" --data "$data" --n 3 --times 2,5,10,20 \
  --out "$work/r.png" >/dev/null
check "restore exits 0" [ $? -eq 0 ]
check "restore: 1 + 4 + 4 + 1 columns" [ "$(be32 "$work/r.png" 16)" -eq 302 ]
check "restore: 3 rows" [ "$(be32 "$work/r.png" 20)" -eq 92 ]

"$cli" schedule --preset ddpm-cnn-bad --compare --log --out "$work/a.svg" >/dev/null
check "schedule exits 0" [ $? -eq 0 ]
check "schedule draws the preset and the three other noise presets" [ "$(grep -c '<polyline' "$work/a.svg")" -eq 4 ]

# ---- errors: one line, non-zero, nothing written --------------------------------------
err() { # description, expected exit code, command...
  desc=$1; want=$2; shift 2
  "$@" >/dev/null 2>"$work/err.txt"
  got=$?
  check "$desc exits $want (got $got)" [ "$got" -eq "$want" ]
  # The slice's "note:" line is information, not the error.
  check "$desc prints one line" [ "$(grep -vc '^colddiff: note:' "$work/err.txt")" -eq 1 ]
}
err "unknown option" 2 "$cli" train --bogus
err "missing --out" 2 "$cli" train --data "$data"
err "negative epochs" 2 "$cli" train --data "$data" --out "$work/x" --epochs -1
err "--val-limit 0" 2 "$cli" train --data "$data" --out "$work/x" --val-limit 0
check "an integer without an upper bound is asked for as 'at least'" \
  grep -q -- "--val-limit must be an integer of at least 1, not '0'" "$work/err.txt"
err "junk number" 2 "$cli" train --data "$data" --out "$work/x" --lr 1e-3x
err "unknown preset" 2 "$cli" train --data "$data" --out "$work/x" --preset nope
err "unknown decoder" 2 "$cli" train --data "$data" --out "$work/x" --decoder resnet
check "an unknown name lists the library's names" grep -q "'resnet' (one of: cnn, unet)" "$work/err.txt"
err "unknown degradation" 2 "$cli" train --data "$data" --out "$work/x" --degradation Blur
check "names are case-sensitive, as the library's" grep -q "noise, blur, pixelate, mask, fade" "$work/err.txt"
err "t-max above T" 2 "$cli" train --data "$data" --out "$work/x" --T 10 --t-max 11
err "grid eta above 1" 2 "$cli" train --data "$data" --out "$work/x" --grid-eta 1.5
for list in 8,,8 ,8 8, ,; do
  err "empty item in --cnn-hidden '$list'" 2 "$cli" train --data "$data" --out "$work/x" --cnn-hidden "$list"
  check "empty item in '$list' is named" grep -q "empty item" "$work/err.txt"
done
err "empty item in --sample-epochs" 2 "$cli" train --data "$data" --out "$work/x" --sample-epochs 1,,2
err "empty item in restore --times" 2 "$cli" restore --checkpoint x --data "$data" --out "$work/x.png" --times 2,,5
err "missing data" 1 "$cli" train --data "$work/nowhere" --out "$work/x"
err "missing checkpoint" 1 "$cli" sample --checkpoint "$work/none.cdm" --out "$work/x.png"
err "corrupt checkpoint" 1 "$cli" info "$work/run/losses.csv"
err "restore time above T" 2 "$cli" restore --checkpoint "$work/run/best.cdm" --data "$data" --times 21 --out "$work/x.png"
err "cold2 on a noise model" 1 "$cli" sample --checkpoint "$work/run/best.cdm" --sampler cold2 --out "$work/x.png"
err "unknown command" 2 "$cli" frobnicate
check "failures leave no output" [ ! -e "$work/x.png" ]

# ---- hostile files: refused at once with a reason, never waited on ---------------------
# (timeout turns a hang into exit 124, which fails the exit-code check)
mkfifo "$work/fifo.cdm"
err "info on a FIFO" 1 timeout 60 "$cli" info "$work/fifo.cdm"
check "info on a FIFO says so" grep -q "FIFO" "$work/err.txt"
err "sample from a FIFO" 1 timeout 60 "$cli" sample --checkpoint "$work/fifo.cdm" --out "$work/x.png"
mkdir -p "$work/fifo-data" "$work/fifo-run"
mkfifo "$work/fifo-data/train-images-idx3-ubyte" "$work/fifo-run/config.txt"
cp "$data/t10k-labels-idx1-ubyte.gz" "$work/fifo-data/train-labels-idx1-ubyte.gz"
cp "$data"/t10k-* "$work/fifo-data/"
err "grid on a FIFO data file" 1 timeout 60 "$cli" grid --data "$work/fifo-data" --out "$work/x.png"
check "grid on a FIFO data file names it" grep -q "train-images-idx3-ubyte.*FIFO" "$work/err.txt"
err "resume with a FIFO config.txt" 1 timeout 60 "$cli" train $tiny --out "$work/fifo-run" --resume
check "resume with a FIFO config.txt names it" grep -q "config.txt" "$work/err.txt"

# ---- options that cannot work fail before any long work, with the reason ---------------
# "prints one line" also shows that no epoch ran (each prints a line).
err "beta-min above beta-max" 2 "$cli" train $tiny --out "$work/x" --beta-min 0.5 --beta-max 0.1
check "beta-min above beta-max says so" grep -q "beta-min 0.5 exceeds --beta-max 0.1" "$work/err.txt"
err "a schedule whose alpha-bar underflows" 1 "$cli" train $tiny --T 1000 --beta-min 0.1 --beta-max 0.5 --out "$work/underflow"
check "the underflow is named" grep -q "alpha-bar" "$work/err.txt"
check "the underflow leaves no config.txt" [ ! -e "$work/underflow/config.txt" ]
err "a grid sampler the model cannot use" 1 "$cli" train $tiny --grid-sampler cold2 --out "$work/x"
err "train --out an existing file" 1 "$cli" train $tiny --out "$work/run/losses.csv"
check "train --out an existing file gives the reason" grep -q "losses.csv: Not a directory" "$work/err.txt"
err "eval --json a folder" 1 "$cli" eval --checkpoint "$work/run/best.cdm" --data "$data" --n 2 --fd-samples 2 --json "$work"
check "eval --json a folder gives the reason" grep -q "Is a directory" "$work/err.txt"
"$cli" eval --checkpoint "$work/run/best.cdm" --data "$data" --n 2 --fd-samples 2 --json "$work" \
  >"$work/out.txt" 2>/dev/null
check "eval --json a folder computes nothing" [ ! -s "$work/out.txt" ]
err "eval with a sampler the model cannot use" 1 "$cli" eval --checkpoint "$work/run/best.cdm" --data "$data" --n 2 --fd-samples 2 --sampler cold2
err "schedule --out a folder" 1 "$cli" schedule --out "$work"
check "schedule --out a folder gives the reason" grep -q "Is a directory" "$work/err.txt"
err "sample into a missing folder" 1 "$cli" sample --checkpoint "$work/run/best.cdm" --n 2 --out "$work/none/x.png"
check "sample into a missing folder gives the reason" grep -q "No such file or directory" "$work/err.txt"
err "train-classifier --out a folder" 1 "$cli" train-classifier --data "$data" --out "$work"

# ---- a file that is there but cannot be read is not a missing one ----------------------
# A symbolic link loop fails with ELOOP even for root, who reads any mode.
mkdir -p "$work/loop-run" "$work/dangling-run" "$work/loop-data"
ln -s last.cdm "$work/loop-run/last.cdm"
err "resume from a last.cdm that cannot be read" 1 "$cli" train $tiny --out "$work/loop-run" --epochs 1 --resume
check "resume names the file and the reason" grep -q "loop-run/last.cdm: Too many levels of symbolic links" "$work/err.txt"
check "resume leaves the unreadable last.cdm alone" [ -L "$work/loop-run/last.cdm" ]
check "resume trains nothing over it" [ ! -e "$work/loop-run/best.cdm" ]
ln -s elsewhere/last.cdm "$work/dangling-run/last.cdm"
err "resume from a dangling last.cdm link" 1 "$cli" train $tiny --out "$work/dangling-run" --epochs 1 --resume
check "resume says the link points nowhere" grep -q "symbolic link to a missing file" "$work/err.txt"
ln -s train-images-idx3-ubyte "$work/loop-data/train-images-idx3-ubyte"
cp "$data"/t10k-* "$work/loop-data/"
cp "$data/t10k-labels-idx1-ubyte.gz" "$work/loop-data/train-labels-idx1-ubyte.gz"
err "train with a train-images file that cannot be read" 1 "$cli" train $tiny --data "$work/loop-data" --out "$work/loop-out" --epochs 1
check "the data error names the file and the reason" grep -q "train-images-idx3-ubyte.*Too many levels of symbolic links" "$work/err.txt"
check "no training on the test set instead" [ ! -e "$work/loop-out/last.cdm" ]
if [ "$(id -u)" -ne 0 ]; then
  mkdir -p "$work/locked-run"
  cp "$work/run/last.cdm" "$work/locked-run/last.cdm"
  chmod 000 "$work/locked-run/last.cdm"
  err "resume from a last.cdm without read permission" 1 "$cli" train $tiny --out "$work/locked-run" --epochs 1 --resume
  check "resume says permission denied" grep -q "Permission denied" "$work/err.txt"
  chmod 600 "$work/locked-run/last.cdm"
else
  echo "SKIP: resume from a last.cdm without read permission (root reads any mode)"
  skip=$((skip + 1))
fi
# ---- eval, train-classifier, reproduce ---------------------------------------------
"$cli" eval --checkpoint "$work/run/best.cdm" --data "$data" --n 6 --fd-samples 5 \
  --json "$work/m.json" >"$work/eval.txt" 2>/dev/null
check "eval exits 0" [ $? -eq 0 ]
for k in test_loss test_loss_std_error rmse ssim psnr class_preservation fd fd_samples \
         class_entropy_nats mean_confidence class_histogram reduction; do
  check "eval JSON has $k" grep -q "\"$k\": " "$work/m.json"
done
check "eval JSON states the reduction" grep -q '"reduction": "per_image"' "$work/m.json"
check "eval JSON gives the FD sample count" grep -q '"fd_samples": 5,' "$work/m.json"
check "eval histogram sums to the samples" [ "$(sed -n 's/.*"class_histogram": \[\(.*\)\].*/\1/p' "$work/m.json" | tr -d ' ' | tr ',' '+' | bc)" -eq 5 ]
check "eval SSIM is in [-1, 1]" awk -F': ' '/"ssim"/ { v = $2 + 0; exit !(v >= -1 && v <= 1) }' "$work/m.json"
check "eval prints the test loss" grep -q "^test loss" "$work/eval.txt"
"$cli" eval --checkpoint "$work/run/best.cdm" --data "$data" --n 6 --fd-samples 5 \
  --reduction report --json "$work/m2.json" >/dev/null 2>&1
check "eval --reduction report says so" grep -q '"reduction": "report"' "$work/m2.json"
err "eval without --data" 2 "$cli" eval --checkpoint "$work/run/best.cdm"
err "eval with a bad classifier" 1 "$cli" eval --checkpoint "$work/run/best.cdm" --data "$data" --n 2 --fd-samples 2 --classifier "$work/run/losses.csv"

"$cli" train-classifier --data "$data" --epochs 1 --batch 64 --out "$work/c1.cdm" >"$work/c.txt" 2>&1
check "train-classifier exits 0" [ $? -eq 0 ]
check "train-classifier reports the accuracy" grep -q "test accuracy" "$work/c.txt"
"$cli" train-classifier --data "$data" --epochs 1 --batch 64 --out "$work/c2.cdm" >/dev/null 2>&1
check "train-classifier is deterministic for a seed" cmp -s "$work/c1.cdm" "$work/c2.cdm"
"$cli" eval --checkpoint "$work/run/best.cdm" --data "$data" --n 2 --fd-samples 2 \
  --classifier "$work/c1.cdm" >/dev/null 2>&1
check "eval takes another classifier" [ $? -eq 0 ]

"$cli" reproduce --data "$data" --out "$work/rep" --budget smoke >/dev/null 2>"$work/rep.err"
check "reproduce exits 0" [ $? -eq 0 ]
check "reproduce writes report.md" [ -s "$work/rep/report.md" ]
check "report.md has the four runs" [ "$(grep -c '^| [a-z].*(ddpm-\|^| [a-z].*(cold-' "$work/rep/report.md")" -eq 4 ]
check "report.md quotes the report's SSIM" grep -q "0.3549" "$work/rep/report.md"
for r in cnn-const-0.001 cnn-const-0.1 unet-blur unet-cosine; do
  check "reproduce: $r samples" is_png "$work/rep/$r/samples.png"
  check "reproduce: $r metrics" [ -s "$work/rep/$r/metrics.json" ]
done
check "reproduce: schedules figure" [ -s "$work/rep/schedules.svg" ]
err "reproduce with a bad budget" 2 "$cli" reproduce --data "$data" --out "$work/rep" --budget huge

for c in train sample restore schedule info export grid fetch-mnist eval train-classifier reproduce; do
  "$cli" $c --help >"$work/help.txt"
  check "$c --help exits 0" [ $? -eq 0 ]
  check "$c --help shows usage" grep -q "^usage: colddiff $c" "$work/help.txt"
done

if [ "$skip" -gt 0 ]; then echo "cli: $pass passed, $fail failed, $skip skipped"
else echo "cli: $pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
