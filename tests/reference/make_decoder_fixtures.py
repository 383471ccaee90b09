#!/usr/bin/python3
"""Write the decoder parity fixtures that tests/check_decoder_parity.c uses.

Run where Debian's python3-torch is installed, from the repository root:

    /usr/bin/python3 tests/reference/make_decoder_fixtures.py [outdir [file ...]]

(outdir defaults to this script's folder; naming files writes only those,
each seeded as in a full run, so adding a fixture leaves the others'
bytes alone). The models are torch_models.py's;
the format is fixture_io.py's. Files:

    decoder_cnn.bin           the report's CNN (28 x 28, hidden 16,32,32,16),
                              PyTorch's default init with the LayerNorm
                              affines perturbed away from 1 and 0
    decoder_unet.bin          a small but complete UNet: dim 8, mults 1,2,4,
                              2 heads of 8, at 12 x 20
    decoder_cnn_trained.bin   a non-default CNN (2 channels, 20 x 12, hidden
                              8,16,8, kernel 5, 12 frequencies, MLP 64 x 2)
                              after 5 Adam steps (lr 1e-2) of DDPM training
    decoder_unet_trained.bin  a non-default UNet (2 channels, dim 6, mults
                              1,2,2, 3 heads of 4, ConvNeXt mult 1) at 16 x 8,
                              after 5 Adam steps
    decoder_cnn_rgb32.bin     a small colour CNN (3 channels, 32 x 32, hidden
                              8,16,8, kernel 5, MLP 32 x 1), LayerNorm
                              affines perturbed
    decoder_unet_rgb32.bin    a small colour UNet (3 channels, dim 8, mults
                              1,2,2, 2 heads of 4, ConvNeXt mult 1) at
                              32 x 32
    decoder_cnn_classes.bin   a small CNN with 4 classes (hidden 8,16,8,
                              kernel 5, MLP 32 x 1) at 12 x 16
    decoder_unet_classes.bin  a small UNet with 5 classes (dim 8, mults 1,2,
                              2 heads of 4, ConvNeXt mult 1) at 8 x 12

Each file holds, at batch N = 3:
    config.type               0 (CNN) or 1 (UNet)
    config.<key>              every decoder.<key> of docs/checkpoint-format.md
                              for that type, as floats (lists as vectors)
    param_count, param_numel  the number of parameter tensors and of floats
    param_names               the state_dict names in order, as byte values,
                              each name followed by a 0 (so the C test can
                              name a tensor PyTorch has and C lacks)
    param.<name>              every parameter, by its state_dict name
    z, tau                    the inputs (z ~ N(0, 1); three distinct tau = t/T
                              in (0, 1], stored as float32)
    labels                    (class-conditional fixtures only) LABELS, the
                              last being -1, "no class"
    out                       g(z, tau)
    dout                      a fixed random R; gradients are those of
                              L = sum(out * R)
    dz, grad.<name>           dL/dz and dL/d<name> for every parameter

Reference precision: out and the gradients are computed by PyTorch in
float64 from the float32 weights and inputs, then rounded to float32 (the
time encodings stay float32, as their rounding is part of the model; see
torch_models.py). The C test thus measures the C decoder's own float32
error. The script also runs the float32 model, prints its error against the
float64 reference relative to each tensor's scale (as check_decoder_parity.c
defines it), and stops if float32 PyTorch would fail the C test's tolerance.
A rerun with the same torch build gives identical bytes.
"""
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import from_torch, write_fixture  # noqa: E402
import torch_models as tm  # noqa: E402

SEED = 20240502
BATCH = 3
# tau = t/T for three (t, T): a tiny time, a middle one and tau = 1 exactly.
TAU_STEPS = [(1, 2000), (731, 1000), (1000, 1000)]
# A class, "no class" and another class: both table rows and the null row.
LABELS = [2, -1, 0]
TRAIN_STEPS = 5
TRAIN_LR = 1e-2
TRAIN_BATCH = 8
# The tolerance of tests/check_decoder_parity.c (see there), checked here
# against float32 PyTorch.
ATOL = 2e-5
RTOL = 1e-5
GRAD_FLOOR = 1e-2

FIXTURES = [
    # file, type, config, (H, W), perturb LayerNorm affines, train
    ("decoder_cnn.bin", "cnn", tm.cnn_config(), (28, 28), True, False),
    ("decoder_unet.bin", "unet",
     tm.unet_config(dim=8, dim_mults=(1, 2, 4), heads=2, head_dim=8), (12, 20), False, False),
    ("decoder_cnn_trained.bin", "cnn",
     tm.cnn_config(channels=2, height=20, width=12, hidden=(8, 16, 8), kernel=5,
                   time_freqs=12, time_hidden=64, time_layers=2), (20, 12), False, True),
    ("decoder_unet_trained.bin", "unet",
     tm.unet_config(channels=2, dim=6, dim_mults=(1, 2, 2), heads=3, head_dim=4,
                    convnext_mult=1), (16, 8), False, True),
    # Colour images at a size other than the report's, small enough to keep
    # the files under 1 MB.
    ("decoder_cnn_rgb32.bin", "cnn",
     tm.cnn_config(channels=3, height=32, width=32, hidden=(8, 16, 8), kernel=5,
                   time_hidden=32, time_layers=1), (32, 32), True, False),
    ("decoder_unet_rgb32.bin", "unet",
     tm.unet_config(channels=3, dim=8, dim_mults=(1, 2, 2), heads=2, head_dim=4,
                    convnext_mult=1),
     (32, 32), False, False),
    # Class conditioning: the label table's rows join the time embedding.
    ("decoder_cnn_classes.bin", "cnn",
     tm.cnn_config(height=12, width=16, hidden=(8, 16, 8), kernel=5, time_hidden=32,
                   time_layers=1, classes=4), (12, 16), True, False),
    ("decoder_unet_classes.bin", "unet",
     tm.unet_config(dim=8, dim_mults=(1, 2), heads=2, head_dim=4, convnext_mult=1, classes=5),
     (8, 12), False, False),
]


# ---------------------------------------------------------------- models

def perturb_layernorms(model):
    """Move the CNN's LayerNorm affines away from 1 and 0 so both are tested."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".net.1." in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.3 * torch.randn_like(p))


def linear_alpha_bar(T=1000, lo=1e-4, hi=0.02):
    """abar_t, t = 0..T, for the linear schedule (docs/models.md, Schedules)."""
    beta = torch.linspace(lo, hi, T, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - beta, 0)]).float()


def train_a_little(model, channels, H, W):
    """TRAIN_STEPS Adam steps on random images with the DDPM loss
    (docs/models.md, Training objective):
    z_t = sqrt(abar) x + sqrt(1 - abar) eps, loss = mean((g(z_t, t/T) - eps)^2)."""
    T = 1000
    abar = linear_alpha_bar(T)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN_LR)
    for step in range(TRAIN_STEPS):
        x = torch.rand(TRAIN_BATCH, channels, H, W) - 0.5
        t = torch.randint(1, T + 1, (TRAIN_BATCH,))
        eps = torch.randn_like(x)
        a = abar[t][:, None, None, None]
        z = a.sqrt() * x + (1 - a).sqrt() * eps
        loss = ((model(z, (t / T).float()) - eps) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"    Adam step {step + 1}: loss {loss.item():.4f}")
    moved = torch.cat([(p.detach() - b).abs().reshape(-1)
                       for p, b in zip(model.parameters(), before)])
    print(f"    weights moved by {moved.mean().item():.3f} on average, "
          f"{moved.max().item():.3f} at most")


# ---------------------------------------------------------------- reference

def forward_backward(model, z, tau, dout, labels=None):
    """out, dz and {name: grad} of L = sum(model(z, tau, labels) * dout),
    computed in the model's dtype."""
    model.zero_grad(set_to_none=True)
    dtype = next(model.parameters()).dtype
    zz = z.to(dtype).requires_grad_(True)
    out = model(zz, tau, labels)
    (out * dout.to(dtype)).sum().backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return out.detach(), zz.grad.detach(), grads


def tensor_scales(ref):
    """The scale S of each tensor, as tests/check_decoder_parity.c defines it:
    its largest |value|; for a gradient at least that of its layer's other
    gradient (weight <-> bias) and GRAD_FLOOR times the largest gradient."""
    largest = max(r.abs().max().item() for k, r in ref.items() if k.startswith("grad."))
    scales = {}
    for name, r in ref.items():
        s = r.abs().max().item()
        if name.startswith("grad."):
            stem, _, last = name.rpartition(".")
            other = {"weight": "bias", "bias": "weight"}.get(last)
            if other and f"{stem}.{other}" in ref:
                s = max(s, ref[f"{stem}.{other}"].abs().max().item())
            s = max(s, GRAD_FLOOR * largest)
        scales[name] = s
    return scales


def float32_error_report(ref, got):
    """Print float32 PyTorch's error against the float64 reference, relative
    to each tensor's scale, and stop if it would fail the C test's
    tolerance (then the tolerance, not the C code, would be wrong)."""
    scales = tensor_scales(ref)
    worst_name, worst = "", 0.0
    for name, r in ref.items():
        err = (got[name].double() - r.double()).abs()
        ratio = err.max().item() / scales[name]
        if ratio > worst:
            worst_name, worst = name, ratio
        if not bool((err <= ATOL * scales[name] + RTOL * r.double().abs()).all()):
            raise SystemExit(f"{name}: float32 torch fails the C test's tolerance "
                             f"(max abs error {err.max().item():.3e})")
    for name in ("out", "dz"):
        err = (got[name].double() - ref[name].double()).abs().max().item()
        print(f"    float32 torch vs float64: {name:<4} max abs {err:.2e} "
              f"(max |ref| {ref[name].abs().max().item():.2e})")
    print(f"    worst over all tensors: {worst:.2e} x scale, in {worst_name}")
    return worst


def names_tensor(names):
    """Names as their UTF-8 byte values, each followed by 0, as floats."""
    codes = []
    for name in names:
        codes += list(name.encode("utf-8")) + [0]
    return torch.tensor([float(c) for c in codes])


def config_entries(kind, cfg):
    entries = [("config.type", torch.tensor([0.0 if kind == "cnn" else 1.0]))]
    for key, value in cfg.items():
        if key == "classes" and value == 0:
            continue  # the fixtures written before classes existed have none
        values = list(value) if isinstance(value, (tuple, list)) else [value]
        entries.append((f"config.{key}", torch.tensor([float(v) for v in values])))
    return entries


def make_fixture(kind, cfg, hw, perturb, train):
    model = tm.make_decoder(kind, cfg)
    channels = cfg["channels"]
    if perturb:
        perturb_layernorms(model)
    if train:
        train_a_little(model, channels, *hw)
    z = torch.randn(BATCH, channels, *hw)
    tau = torch.tensor([t / T for t, T in TAU_STEPS], dtype=torch.float32)
    dout = torch.randn(BATCH, channels, *hw)
    labels = torch.tensor(LABELS) if cfg["classes"] > 0 else None

    out, dz, grads = forward_backward(copy.deepcopy(model).double(), z, tau, dout, labels)
    ref = {"out": out, "dz": dz, **{"grad." + k: g for k, g in grads.items()}}
    out32, dz32, grads32 = forward_backward(model, z, tau, dout, labels)
    got = {"out": out32, "dz": dz32, **{"grad." + k: g for k, g in grads32.items()}}
    float32_error_report(ref, got)

    params = list(model.named_parameters())
    entries = config_entries(kind, cfg)
    entries += [("param_count", torch.tensor([float(len(params))])),
                ("param_numel", torch.tensor([float(tm.param_count(model))])),
                ("param_names", names_tensor(name for name, _ in params))]
    entries += [("param." + name, p) for name, p in params]
    entries += [("z", z), ("tau", tau), ("out", out), ("dout", dout), ("dz", dz)]
    if labels is not None:
        entries.append(("labels", labels.float()))
    entries += [("grad." + name, grads[name]) for name, _ in params]
    print(f"    {len(params)} parameter tensors, {tm.param_count(model)} floats")
    return [from_torch(name, t) for name, t in entries]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    only = set(sys.argv[2:])
    unknown = only - {row[0] for row in FIXTURES}
    if unknown:
        raise SystemExit(f"no such fixture: {', '.join(sorted(unknown))}")
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, seed {SEED}")
    total = 0
    for fname, kind, cfg, hw, perturb, train in FIXTURES:
        if only and fname not in only:
            continue
        torch.manual_seed(SEED)   # per file, so the fixtures are independent
        print(f"{fname}: {kind} {cfg} at {hw[0]}x{hw[1]}")
        path = os.path.join(outdir, fname)
        write_fixture(path, make_fixture(kind, cfg, hw, perturb, train))
        size = os.path.getsize(path)
        total += size
        print(f"    wrote {path} ({size} bytes)")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
