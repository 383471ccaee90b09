#!/bin/sh
# run_decoder_bench.sh - libcolddiff's decoders next to PyTorch's, in one run.
#
#   tests/bench/run_decoder_bench.sh [--bench PATH] [--rounds R] [--reps K]
#       [--warmup W] [--threads N] [--batch B] [--model cnn|unet|both]
#       [--raw FILE]
#
# Alternates R rounds (default 3) of bench_decoder (ours) and
# bench_decoder_torch.py (PyTorch, tests/reference/torch_models.py), so that
# both see the same machine noise, and prints a markdown table: images per
# second from the best time per batch over all rounds, and the ratio
# ours / theirs (also of the medians).
#
# The two sides are run as docs/performance.md prescribes:
#   - ours with the environment untouched (OPENBLAS_CORETYPE and
#     OPENBLAS_L2_SIZE stay as they are: tests and CI never change them);
#   - PyTorch at its best: torch.set_num_threads(N), tcmalloc preloaded
#     (LD_PRELOAD, Debian libtcmalloc-minimal4; skipped with a note when it is
#     missing) and OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for that
#     command only.
# Without a python3 that imports torch it prints our numbers only and says
# why. --bench defaults to $BUILD_DIR/tests/bench_decoder, BUILD_DIR to
# build/ in the source tree; PYTHON defaults to /usr/bin/python3. --raw keeps
# every measurement (one JSON object a line) in FILE.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bench="${BUILD_DIR:-$root/build}/tests/bench_decoder"
torch_script="$here/bench_decoder_torch.py"
python="${PYTHON:-/usr/bin/python3}"
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
rounds=3
reps=5
warmup=2
threads=2
batch=128
model=both
raw=

usage() {
    echo "usage: $0 [--bench PATH] [--rounds R] [--reps K] [--warmup W] [--threads N]" >&2
    echo "       [--batch B] [--model cnn|unet|both] [--raw FILE]" >&2
    exit 2
}

# A positive integer or usage().
count() {
    case "$1" in
        '' | *[!0-9]* | 0) usage ;;
    esac
    echo "$1"
}

while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
        --bench) bench=$2 ;;
        --rounds) rounds=$(count "$2") ;;
        --reps) reps=$(count "$2") ;;
        --warmup)
            case "$2" in '' | *[!0-9]*) usage ;; esac
            warmup=$2
            ;;
        --threads) threads=$(count "$2") ;;
        --batch) batch=$(count "$2") ;;
        --model)
            case "$2" in cnn | unet | both) ;; *) usage ;; esac
            model=$2
            ;;
        --raw) raw=$2 ;;
        *) usage ;;
    esac
    shift 2
done

if [ ! -x "$bench" ]; then
    echo "run_decoder_bench: $bench not found; build the project first" >&2
    echo "  (or pass --bench PATH / set BUILD_DIR)" >&2
    exit 1
fi

out=$(mktemp "${TMPDIR:-/tmp}/decoder-bench.XXXXXX")
trap 'rm -f "$out"' EXIT HUP INT TERM

have_torch=yes
why_no_torch=
if [ ! -x "$python" ]; then
    have_torch=no
    why_no_torch="$python does not exist"
elif ! "$python" -c 'import torch' >/dev/null 2>&1; then
    have_torch=no
    why_no_torch="$python cannot import torch (Debian: apt-get install python3-torch)"
fi

preload_note="tcmalloc preloaded ($tcmalloc)"
if [ ! -r "$tcmalloc" ]; then
    preload_note="tcmalloc NOT preloaded: $tcmalloc is missing (Debian: libtcmalloc-minimal4), so PyTorch runs below its best"
fi

args="--threads $threads --reps $reps --warmup $warmup --batch $batch --model $model --json"

run_ours() {
    # shellcheck disable=SC2086 # $args is a list of words on purpose
    "$bench" $args >>"$out"
}

run_torch() {
    if [ -r "$tcmalloc" ]; then
        # shellcheck disable=SC2086
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_PRELOAD="$tcmalloc" \
            "$python" "$torch_script" $args >>"$out"
    else
        # shellcheck disable=SC2086
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
            "$python" "$torch_script" $args >>"$out"
    fi
}

cpu=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "# Decoder benchmark: libcolddiff vs PyTorch"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- CPU: ${cpu:-unknown}, $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') online CPU(s)"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo "- $rounds alternating rounds; each: $warmup warm-up + $reps timed runs per workload, $threads thread(s), batch $batch"
echo "- libcolddiff: $bench (environment untouched: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)})"
if [ "$have_torch" = yes ]; then
    echo "- PyTorch $("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null):" \
        "$preload_note; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for it"
else
    echo "- PyTorch: not measured, $why_no_torch"
fi
echo

r=1
while [ "$r" -le "$rounds" ]; do
    echo "round $r/$rounds: libcolddiff" >&2
    run_ours
    if [ "$have_torch" = yes ]; then
        echo "round $r/$rounds: PyTorch" >&2
        run_torch
    fi
    r=$((r + 1))
done

echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo
[ -z "$raw" ] || cp "$out" "$raw"

# Combine: per (model, workload, batch) and side, the best time over all
# runs and the median of the rounds' medians.
awk -v have_torch="$have_torch" '
function field(line, key,    s) {
    if (!match(line, "\"" key "\": *[^,}]*")) return ""
    s = substr(line, RSTART, RLENGTH)
    sub(/^[^:]*: */, "", s)
    gsub(/"/, "", s)
    return s
}
function median(list,    n, v, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
            t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
        }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function label(model, workload, batch,    m) {
    m = model == "cnn" ? "CNN" : "UNet"
    if (workload == "fwd") return m " forward, batch " batch
    if (workload == "train") return m " training step (fwd + bwd), batch " batch
    if (workload == "sample") return m " forward, batch " batch " (one DDPM sampling step)"
    return m " " workload ", batch " batch
}
/^\{/ {
    side = field($0, "impl") == "pytorch" ? "t" : "c"
    key = field($0, "model") SUBSEP field($0, "workload") SUBSEP field($0, "batch")
    if (!(key in seen)) { seen[key] = 1; order[++nkeys] = key }
    b = field($0, "best_ms") + 0
    if (!((key, side) in best) || b < best[key, side]) best[key, side] = b
    meds[key, side] = meds[key, side] " " field($0, "median_ms")
}
END {
    if (have_torch == "yes") {
        print "| workload | libcolddiff img/s | PyTorch img/s | ratio (ours/theirs) | ratio of medians | libcolddiff ms/batch | PyTorch ms/batch |"
        print "|---|---:|---:|---:|---:|---:|---:|"
    } else {
        print "| workload | libcolddiff img/s | libcolddiff ms/batch (best) | median ms/batch |"
        print "|---|---:|---:|---:|"
    }
    for (i = 1; i <= nkeys; i++) {
        key = order[i]
        split(key, k, SUBSEP)
        n = k[3] + 0
        c = best[key, "c"]; cm = median(meds[key, "c"])
        if (have_torch == "yes" && ((key, "t") in best)) {
            t = best[key, "t"]; tm = median(meds[key, "t"])
            printf "| %s | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f |\n", label(k[1], k[2], n),
                   n * 1000 / c, n * 1000 / t, t / c, tm / cm, c, t
        } else if (have_torch == "yes") {
            printf "| %s | %.1f | (missing) | | | %.1f | |\n", label(k[1], k[2], n),
                   n * 1000 / c, c
        } else {
            printf "| %s | %.1f | %.1f | %.1f |\n", label(k[1], k[2], n), n * 1000 / c, c, cm
        }
    }
}' "$out"

echo
echo "img/s = batch / best time per batch over all rounds; ratio > 1 means libcolddiff is faster."
if [ "$have_torch" != yes ]; then
    echo "PyTorch was not measured: $why_no_torch."
fi
