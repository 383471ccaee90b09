"""Write tests/reference/adam.bin: PyTorch's Adam/AdamW trajectories for
tests/check_adam.c.

Run with the Debian interpreter that has python3-torch (1.13):
    /usr/bin/python3 tests/reference/make_adam_fixture.py

Tensors in the fixture (format: fixture_io.py):
    init.<p>                initial value of parameter <p>
    grad<k>.<p>             the gradient fed at step k (k = 1..5)
    <variant>.step<k>.<p>   the value after step k
    ema.ema<k>.<p>          the EMA after step k (variant "ema" only)
The hyper-parameters of each variant are the VARIANTS table below;
tests/check_adam.c repeats them.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import from_torch, write_fixture  # noqa: E402

PARAMS = [("conv.weight", (4, 2, 3, 3)), ("conv.bias", (4,)), ("lin.weight", (5, 6))]
# Gradient sets have different sizes so that clipping (max_norm 5; the
# global norm of a unit set is about 10) is active at some steps only.
GRAD_SCALES = [1.0, 0.01, 3.0, 0.5, 2.0]
STEPS = len(GRAD_SCALES)

# name: (lr, beta1, beta2, eps, weight_decay, adamw, clip max_norm, ema decay)
VARIANTS = {
    "adam_small": (2e-4, 0.9, 0.999, 1e-8, 0.0, False, 0.0, 0.0),
    "adam_large": (1e-2, 0.9, 0.999, 1e-8, 0.0, False, 0.0, 0.0),
    "adam_betas": (1e-2, 0.8, 0.99, 1e-6, 0.0, False, 0.0, 0.0),
    "adam_wd": (1e-2, 0.9, 0.999, 1e-8, 0.1, False, 0.0, 0.0),
    "adamw": (1e-2, 0.9, 0.999, 1e-8, 0.1, True, 0.0, 0.0),
    "clip": (1e-2, 0.9, 0.999, 1e-8, 0.0, False, 5.0, 0.0),
    "ema": (1e-2, 0.9, 0.999, 1e-8, 0.0, False, 0.0, 0.9),
}


def run(variant, init, grads, out):
    lr, b1, b2, eps, wd, adamw, clip, decay = VARIANTS[variant]
    params = [torch.nn.Parameter(t.clone()) for t in init]
    kind = torch.optim.AdamW if adamw else torch.optim.Adam
    opt = kind(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    ema = [p.detach().clone() for p in params]
    for k in range(STEPS):
        for p, g in zip(params, grads[k]):
            p.grad = g.clone()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        for (name, _), p in zip(PARAMS, params):
            out.append(from_torch(f"{variant}.step{k + 1}.{name}", p))
        if decay > 0:
            with torch.no_grad():
                for (name, _), e, p in zip(PARAMS, ema, params):
                    e.mul_(decay).add_(p, alpha=1 - decay)
                    out.append(from_torch(f"{variant}.ema{k + 1}.{name}", e))


def main():
    torch.manual_seed(20240521)
    init = [0.5 * torch.randn(shape) for _, shape in PARAMS]
    grads = [[s * torch.randn(shape) for _, shape in PARAMS] for s in GRAD_SCALES]
    out = [from_torch(f"init.{name}", t) for (name, _), t in zip(PARAMS, init)]
    for k in range(STEPS):
        out += [from_torch(f"grad{k + 1}.{name}", g) for (name, _), g in zip(PARAMS, grads[k])]
    for variant in VARIANTS:
        run(variant, init, grads, out)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adam.bin")
    write_fixture(path, out)
    print(f"wrote {path}: {len(out)} tensors (torch {torch.__version__})")


if __name__ == "__main__":
    main()
