#!/bin/sh
# run_rss_bench.sh - peak resident memory of colddiff commands next to
# PyTorch doing the same network work, as a markdown table.
#
#   tests/bench/run_rss_bench.sh --data MNIST_DIR --cnn CKPT --unet CKPT
#
# CKPT are checkpoints of the report's CNN and UNet (any training length:
# memory does not depend on the weights). For each decoder it measures, with
# GNU time's maximum resident set size:
#   - colddiff sample --n 64 against a PyTorch forward at batch 64 under
#     torch.no_grad() (one sampling step; the chain repeats it);
#   - colddiff eval --n 100 --fd-samples 100 (test loss, restorations and
#     samples) against a PyTorch forward at batch 128 under torch.no_grad();
#   - colddiff train (one epoch on 512 images, batch 128, with its
#     validation and sample grid) against PyTorch's forward and backward
#     at batch 128 (the network part of a step, without optimiser or data).
# PyTorch runs as in run_decoder_bench.sh: /usr/bin/python3, 2 threads,
# tcmalloc preloaded when installed, OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset.
# BUILD_DIR defaults to build/ in the source tree.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cli="${BUILD_DIR:-$root/build}/examples/colddiff"
python="${PYTHON:-/usr/bin/python3}"
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
data= cnn= unet=

usage() {
    echo "usage: $0 --data MNIST_DIR --cnn CKPT --unet CKPT" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
        --data) data=$2 ;;
        --cnn) cnn=$2 ;;
        --unet) unet=$2 ;;
        *) usage ;;
    esac
    shift 2
done
[ -n "$data" ] && [ -n "$cnn" ] && [ -n "$unet" ] || usage
[ -x "$cli" ] || { echo "run_rss_bench: $cli not found; build first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "run_rss_bench: needs GNU time (Debian: time)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rss-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT HUP INT TERM

# Peak RSS in MiB of a command (its output goes to $work/log).
peak() {
    /usr/bin/time -f "%M" -o "$work/kb" "$@" >"$work/log" 2>&1 ||
        { echo "run_rss_bench: failed: $*" >&2; tail -n 5 "$work/log" >&2; exit 1; }
    awk '{printf "%.0f", $1 / 1024}' "$work/kb"
}

torch_peak() { # model workload batch
    pre=
    [ -r "$tcmalloc" ] && pre=$tcmalloc
    peak env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_PRELOAD="$pre" "$python" \
        "$here/bench_decoder_torch.py" --model "$1" --workload "$2" --batch "$3" \
        --reps 1 --warmup 1 --threads 2
}

cpu=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: ${cpu:-unknown}"
echo "- PyTorch: $("$python" -c 'import torch; print(torch.__version__)'), tcmalloc" \
    "$([ -r "$tcmalloc" ] && echo preloaded || echo 'not installed')"
echo
echo "| decoder | colddiff command | peak MiB | PyTorch, same network work | peak MiB |"
echo "|---|---|---:|---|---:|"
for kind in cnn unet; do
    ck=$cnn
    [ "$kind" = unet ] && ck=$unet
    ours=$(peak "$cli" sample --checkpoint "$ck" --n 64 --out "$work/s.png")
    theirs=$(torch_peak "$kind" fwd 64)
    echo "| $kind | sample --n 64 | $ours | forward, batch 64, no_grad | $theirs |"
    ours=$(peak "$cli" eval --checkpoint "$ck" --data "$data" --n 100 --fd-samples 100)
    theirs=$(torch_peak "$kind" fwd 128)
    echo "| $kind | eval --n 100 --fd-samples 100 | $ours | forward, batch 128, no_grad | $theirs |"
    preset=ddpm-cnn-good
    [ "$kind" = unet ] && preset=cold-blur-unet
    ours=$(peak "$cli" train --preset "$preset" --data "$data" --out "$work/run-$kind" \
        --epochs 1 --train-limit 512 --val-limit 256 --n-samples 16 --batch 128)
    theirs=$(torch_peak "$kind" train 128)
    echo "| $kind | train --preset $preset, batch 128 (1 epoch of 512) | $ours | forward + backward, batch 128 | $theirs |"
done
