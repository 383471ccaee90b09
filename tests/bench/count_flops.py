#!/usr/bin/python3
"""Convolution FLOPs of one forward of the report's decoders, per layer
shape, from the PyTorch definitions in tests/reference (2 FLOPs per
multiply-add). docs/performance.md quotes its totals.

    /usr/bin/python3 tests/bench/count_flops.py [--model cnn|unet] [--batch 128]
"""
import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
import torch  # noqa: E402
import torch_models as tm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("cnn", "unet"), default="unet")
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    net = tm.UNetDecoder() if a.model == "unet" else tm.CNNDecoder()
    flops = collections.Counter()

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            key = f"convT {mod.kernel_size[0]}x{mod.kernel_size[1]} {mod.in_channels}->{mod.out_channels} @{out.shape[-1]}"
            flops[key] += 2 * inp[0].numel() * mod.out_channels * k
        elif isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            kind = "depthwise" if mod.groups > 1 else "conv"
            key = f"{kind} {mod.kernel_size[0]}x{mod.kernel_size[1]} {mod.in_channels}->{mod.out_channels} @{out.shape[-1]}"
            flops[key] += 2 * out.numel() * (mod.in_channels // mod.groups) * k

    for m in net.modules():
        m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.randn(a.batch, 1, 28, 28), torch.rand(a.batch))
    for key, f in sorted(flops.items(), key=lambda kv: -kv[1]):
        print(f"{key:36s} {f / 1e9:8.2f} GFLOP")
    print(f"{'total':36s} {sum(flops.values()) / 1e9:8.2f} GFLOP")


if __name__ == "__main__":
    main()
