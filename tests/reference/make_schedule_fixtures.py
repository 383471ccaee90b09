"""Write tests/reference/schedules.bin: the report's float32 schedules as
PyTorch computes them, for tests/check_schedule.c.

Run with the Debian interpreter that has python3-torch (1.13):
    /usr/bin/python3 tests/reference/make_schedule_fixtures.py

The report's code built its schedules in float32: beta_1..beta_T by
torch.linspace (or a constant), beta_0 = 0 (the constant variant: beta_0 =
c), and alpha-bar = exp(cumsum(log(1 - beta))). Its cumulative sum added
float32 values in order (alpha-bar_1000 of the linear schedule has the bits
0x38294660 that way). PyTorch 1.13's CPU cumsum accumulates in double
instead, so the sum here is an explicit float32 loop over torch's logs.

Tensors (format: fixture_io.py), per case <c>:
    <c>.cfg         [T, a, b, kind]; kind 0: linspace(a, b, T), 1: constant a
    <c>.beta        beta_0..beta_T
    <c>.log         log(1 - beta_t), t = 0..T
    <c>.alpha_bar   alpha-bar_0..alpha-bar_T
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import from_torch, write_fixture  # noqa: E402

# name: (T, a, b, kind). The odd sizes reach linspace's tail after its
# blocks of 16; "down" runs from high to low.
CASES = {
    "linear": (1000, 1e-4, 0.02, 0),
    "linear37": (37, 1e-3, 0.05, 0),
    "linear2": (2, 1e-4, 0.02, 0),
    "down": (100, 0.02, 1e-4, 0),
    "good": (2000, 1e-3, 0.0, 1),
    "bad": (200, 0.1, 0.0, 1),
}


def case(T, a, b, kind):
    if kind == 0:
        beta = torch.cat([torch.zeros(1), torch.linspace(a, b, T, dtype=torch.float32)])
    else:
        beta = torch.full((T + 1,), a, dtype=torch.float32)
    log = torch.log(1 - beta)
    acc = np.float32(0.0)
    sums = np.empty(T + 1, dtype=np.float32)
    for t, v in enumerate(log.numpy()):
        acc = np.float32(acc + v)
        sums[t] = acc
    return beta, log, torch.exp(torch.from_numpy(sums))


def main():
    torch.set_num_threads(1)
    out = []
    for name, (T, a, b, kind) in CASES.items():
        beta, log, abar = case(T, a, b, kind)
        out.append((f"{name}.cfg", (4,), [float(T), a, b, float(kind)]))
        out += [from_torch(f"{name}.beta", beta), from_torch(f"{name}.log", log),
                from_torch(f"{name}.alpha_bar", abar)]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schedules.bin")
    write_fixture(path, out)
    bits = case(*CASES["linear"])[2][-1].numpy().view(np.uint32)
    print(f"wrote {path}; linear alpha-bar_1000 bits {int(bits):#010x}")


if __name__ == "__main__":
    main()
