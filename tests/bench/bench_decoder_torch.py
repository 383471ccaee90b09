#!/usr/bin/python3
"""PyTorch side of the decoder benchmark: the measurements of bench_decoder.c
with the PyTorch definitions in tests/reference/torch_models.py.

    bench_decoder_torch.py [--threads N] [--model cnn|unet|both] [--reps K]
                           [--batch B] [--warmup W]
                           [--workload all|fwd|train|sample] [--json] [--rss]

Workloads, at batch B (default 128) and 28 x 28 x 1, as in bench_decoder.c:
    fwd     model(z, tau) under torch.no_grad();
    train   model.zero_grad(), out = model(z, tau), out.backward(dout):
            the network part of a training step (z needs no gradient);
    sample  the CNN forward at batch 64 under torch.no_grad(), one DDPM
            sampling step.
Each runs W warm-up iterations, then K timed ones (time.perf_counter, which
is CLOCK_MONOTONIC on Linux), and prints the best and the median; --json
prints the same one-line JSON objects as bench_decoder --json, with
"impl": "pytorch". --rss prints the process's peak resident set size at the
end (run one workload per process to compare it with a colddiff command).

PyTorch at its best (docs/performance.md): 2 threads, tcmalloc preloaded,
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset. run_decoder_bench.sh sets up
the environment; this script only sets the thread count.
"""
import argparse
import importlib.util
import json
import os
import resource
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_PATH = os.path.join(HERE, "..", "reference", "torch_models.py")
SAMPLE_BATCH = 64


def load_models():
    """Import tests/reference/torch_models.py by path."""
    spec = importlib.util.spec_from_file_location("torch_models", MODELS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_batch(n, gen):
    z = torch.randn(n, 1, 28, 28, generator=gen)
    tau = torch.rand(n, generator=gen)
    # dout of a mean-squared loss is small; scale it like one (as the C side).
    dout = torch.randn(n, 1, 28, 28, generator=gen) * (2.0 / (n * 28 * 28))
    return z, tau, dout


def time_it(fn, warmup, reps):
    """Best and median seconds of `reps` calls of fn after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def report(args, model, workload, batch, best, median):
    ips, ips_median = batch / best, batch / median
    if args.json:
        print(json.dumps({
            "impl": "pytorch", "model": model, "workload": workload,
            "batch": batch, "threads": args.threads, "reps": args.reps,
            "best_ms": round(1e3 * best, 3), "median_ms": round(1e3 * median, 3),
            "img_s": round(ips, 2), "img_s_median": round(ips_median, 2),
        }))
    else:
        print(f"{model:<5} {workload:<7} batch {batch:4d}  best {1e3 * best:9.2f} ms  "
              f"median {1e3 * median:9.2f} ms  {ips:9.1f} img/s (median {ips_median:9.1f})")
    sys.stdout.flush()


def bench_model(args, models, kind, workloads, gen):
    model = models.make_decoder(kind)

    def forward(z, tau):
        with torch.no_grad():
            model(z, tau)

    def train_step(z, tau, dout):
        model.zero_grad()
        out = model(z, tau)
        out.backward(dout)

    z, tau, dout = make_batch(args.batch, gen)
    if "fwd" in workloads:
        times = time_it(lambda: forward(z, tau), args.warmup, args.reps)
        report(args, kind, "fwd", args.batch, *times)
    if "train" in workloads:
        times = time_it(lambda: train_step(z, tau, dout), args.warmup, args.reps)
        report(args, kind, "train", args.batch, *times)
    if "sample" in workloads and kind == "cnn":
        zs, taus, _ = make_batch(SAMPLE_BATCH, gen)
        times = time_it(lambda: forward(zs, taus), args.warmup, args.reps)
        report(args, kind, "sample", SAMPLE_BATCH, *times)


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--model", choices=("cnn", "unet", "both"), default="both")
    parser.add_argument("--reps", type=positive, default=5)
    parser.add_argument("--batch", type=positive, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workload", choices=("all", "fwd", "train", "sample"),
                        default="all")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rss", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    models = load_models()
    workloads = ("fwd", "train", "sample") if args.workload == "all" else (args.workload,)
    kinds = ("cnn", "unet") if args.model == "both" else (args.model,)
    if not args.json:
        preload = os.environ.get("LD_PRELOAD", "")
        print(f"bench_decoder_torch: torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s), {args.warmup} warm-up + "
              f"{args.reps} timed runs, "
              f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
              f"tcmalloc {'preloaded' if 'tcmalloc' in preload else 'not preloaded'}")
    torch.manual_seed(20240601)
    gen = torch.Generator().manual_seed(20240601)
    for kind in kinds:
        bench_model(args, models, kind, workloads, gen)
    if args.rss:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
        print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
