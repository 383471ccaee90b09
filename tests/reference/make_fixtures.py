#!/usr/bin/python3
"""Write the PyTorch reference fixtures that tests/check_parity.c compares with.

Run where Debian's python3-torch is installed:

    /usr/bin/python3 tests/reference/make_fixtures.py [outdir]

(outdir defaults to this script's folder). The format is fixture_io.py's.

Every op family gets one file. Each case in a file has a name prefix
("k7p3.", "b3.", ...) and holds:
  - cfg:   the shape and settings as a small float tensor (see each function);
  - the inputs and parameters (float32, from torch.manual_seed(SEED));
  - out:   the forward result;
  - dout:  a fixed random R; the gradients are those of L = sum(out * R);
  - d<x>:  dL/d<x> for every input and parameter, from torch autograd.

Reference precision. The kernels' results are computed by PyTorch in float64
from the float32 inputs and then rounded to float32, so the fixtures hold the
exactly rounded answer and the C test measures the C kernel's own error. The
same ops are also run in float32 PyTorch, and the script checks that they agree
with the float64 reference within the tolerances check_parity.c uses (printing
the difference). The time encodings are the exception: there the float32
rounding steps are part of the model (docs/models.md, Decoders), so they are computed in
float32 exactly as the report's code does.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import from_torch, write_fixture  # noqa: E402

SEED = 20240501


# ---------------------------------------------------------------- helpers

class Case:
    """Collects the tensors of one fixture file under name prefixes."""

    def __init__(self):
        self.entries = []

    def add(self, name, t):
        self.entries.append(from_torch(name, t))

    def cfg(self, prefix, values):
        self.add(prefix + "cfg", torch.tensor([float(v) for v in values]))


def uniform(shape, lo=-1.0, hi=1.0):
    """float32 uniform in [lo, hi)."""
    return torch.rand(shape, dtype=torch.float32) * (hi - lo) + lo


def grads64(fn, inputs, dout):
    """Evaluate fn on float64 copies of the float32 `inputs` (a dict of
    tensors or None), return (out, {name: d<name>}) as float32, the gradients
    being those of sum(fn(...) * dout)."""
    leaves = {k: (None if v is None else v.double().requires_grad_(True))
              for k, v in inputs.items()}
    out = fn(**leaves)
    (out * dout.double()).sum().backward()
    grads = {k: v.grad.float() for k, v in leaves.items() if v is not None}
    return out.detach().float(), grads


def grads32(fn, inputs, dout):
    """The same in float32 (to measure PyTorch's own float32 error)."""
    leaves = {k: (None if v is None else v.clone().requires_grad_(True))
              for k, v in inputs.items()}
    out = fn(**leaves)
    (out * dout).sum().backward()
    grads = {k: v.grad.clone() for k, v in leaves.items() if v is not None}
    return out.detach(), grads


def check32(label, fn, inputs, dout, out64, g64, atol=2e-5, rtol=1e-4):
    """Assert float32 PyTorch agrees with the float64 reference at the
    tolerance check_parity.c applies (atol scaled by the largest |value|)."""
    out32, g32 = grads32(fn, inputs, dout)
    pairs = [("out", out32, out64)] + [("d" + k, g32[k], g64[k]) for k in g64]
    worst = 0.0
    for name, a, b in pairs:
        err = (a - b).abs()
        tol = atol * max(1.0, b.abs().max().item()) + rtol * b.abs()
        worst = max(worst, err.max().item())
        if not bool((err <= tol).all()):
            raise SystemExit(f"{label}{name}: float32 torch differs from the float64 "
                             f"reference by {err.max().item():.3e}")
    print(f"  {label:<14} float32 torch vs float64 reference: max abs {worst:.2e}")


def add_op_case(c, prefix, fn, inputs):
    """Run fn (keyword inputs) in float64, store inputs, out, dout, grads."""
    probe = fn(**{k: (None if v is None else v.double()) for k, v in inputs.items()})
    dout = torch.randn(probe.shape, dtype=torch.float32)
    out, g = grads64(fn, inputs, dout)
    check32(prefix, fn, inputs, dout, out, g)
    for k, v in inputs.items():
        if v is not None:
            c.add(prefix + k, v)
    c.add(prefix + "out", out)
    c.add(prefix + "dout", dout)
    for k, v in g.items():
        c.add(prefix + "d" + k, v)


# ---------------------------------------------------------------- op families

def conv2d_fixture():
    """cfg = [N, C_in, H, W, C_out, kh, kw, stride, pad, groups, has_bias]."""
    cases = [
        # prefix    N  Cin H  W  Cout kh kw s  p  g  bias
        ("k7p3.",   2, 3, 9, 8, 4,   7, 7, 1, 3, 1, 1),   # the CNN's blocks
        ("k3p1.",   3, 4, 6, 7, 5,   3, 3, 1, 1, 1, 1),   # ConvNeXt net.0/net.2
        ("k1.",     1, 6, 5, 4, 3,   1, 1, 1, 0, 1, 1),   # res_conv, to_out
        ("k1nb.",   3, 4, 3, 5, 6,   1, 1, 1, 0, 1, 0),   # to_qkv has no bias
        ("k4s2p1.", 3, 4, 8, 6, 4,   4, 4, 2, 1, 1, 1),   # Downsample
        ("k3s2p1.", 1, 2, 7, 8, 3,   3, 3, 2, 1, 1, 1),   # odd size, floor
        ("dw7.",    2, 5, 8, 9, 5,   7, 7, 1, 3, 5, 1),   # depthwise ds_conv
        ("g2.",     2, 4, 5, 6, 6,   3, 3, 1, 1, 2, 1),   # groups 2
        ("k3x5.",   2, 3, 6, 7, 2,   3, 5, 1, 1, 1, 1),   # non-square kernel
        ("tile.",  17, 2, 5, 5, 3,   3, 3, 1, 1, 1, 1),   # batch beyond a tile
    ]
    c = Case()
    for prefix, N, Ci, H, W, Co, kh, kw, s, p, g, bias in cases:
        fan_in = Ci // g * kh * kw
        bound = 1.0 / math.sqrt(fan_in)
        inputs = {
            "x": torch.randn(N, Ci, H, W),
            "weight": uniform((Co, Ci // g, kh, kw), -bound, bound),
            "bias": uniform((Co,), -bound, bound) if bias else None,
        }

        def fn(x, weight, bias, s=s, p=p, g=g):
            return F.conv2d(x, weight, bias, stride=s, padding=p, groups=g)

        c.cfg(prefix, [N, Ci, H, W, Co, kh, kw, s, p, g, bias])
        add_op_case(c, prefix, fn, inputs)
    return c


def conv_transpose2d_fixture():
    """cfg = [N, C_in, H, W, C_out, kh, kw, stride, pad, has_bias];
    weight C_in x C_out x kh x kw (PyTorch's ConvTranspose2d layout)."""
    cases = [
        # prefix      N  Cin H  W  Cout kh kw s  p  bias
        ("b1.",       1, 3, 4, 5, 3,   4, 4, 2, 1, 1),   # Upsample, C_in == C_out
        ("b3.",       3, 2, 3, 6, 4,   4, 4, 2, 1, 1),   # C_in != C_out
        ("sq.",       3, 4, 4, 4, 4,   4, 4, 2, 1, 1),   # square, as in the UNet
        ("k3s2p0nb.", 2, 3, 3, 4, 2,   3, 3, 2, 0, 0),   # general settings
    ]
    c = Case()
    for prefix, N, Ci, H, W, Co, kh, kw, s, p, bias in cases:
        bound = 1.0 / math.sqrt(Co * kh * kw)
        inputs = {
            "x": torch.randn(N, Ci, H, W),
            "weight": uniform((Ci, Co, kh, kw), -bound, bound),
            "bias": uniform((Co,), -bound, bound) if bias else None,
        }

        def fn(x, weight, bias, s=s, p=p):
            return F.conv_transpose2d(x, weight, bias, stride=s, padding=p)

        c.cfg(prefix, [N, Ci, H, W, Co, kh, kw, s, p, bias])
        add_op_case(c, prefix, fn, inputs)
    return c


def linear_fixture():
    """cfg = [B, I, O, has_bias]; weight O x I."""
    cases = [("b1.", 1, 5, 7, 1), ("b3.", 3, 32, 16, 1), ("nb.", 4, 6, 3, 0),
             ("wide.", 3, 128, 40, 1)]
    c = Case()
    for prefix, B, I, O, bias in cases:
        bound = 1.0 / math.sqrt(I)
        inputs = {
            "x": torch.randn(B, I),
            "weight": uniform((O, I), -bound, bound),
            "bias": uniform((O,), -bound, bound) if bias else None,
        }
        c.cfg(prefix, [B, I, O, bias])
        add_op_case(c, prefix, lambda x, weight, bias: F.linear(x, weight, bias), inputs)
    return c


def gelu_fixture():
    """Exact (erf) GELU on a sweep of [-8, 8], special values and randn."""
    c = Case()
    sweep = torch.linspace(-8.0, 8.0, 161)
    special = torch.tensor([0.0, -0.0, 1e-7, -1e-7, 1e-3, -1e-3, 12.0, -12.0, 30.0, -30.0])
    x = torch.cat([sweep, special, torch.randn(3 * 5 * 4)])
    c.cfg("a.", [x.numel()])
    add_op_case(c, "a.", lambda x: F.gelu(x, approximate="none"), {"x": x})
    return c


def layernorm_small(c, prefix, N, C, H, W, affine, offset=0.0):
    """cfg = [N, C, H, W, affine, eps]; also mean and rstd per sample."""
    D = C * H * W
    inputs = {"x": torch.randn(N, C, H, W) * 2.0 + offset,
              "weight": uniform((C, H, W), 0.5, 1.5) if affine else None,
              "bias": uniform((C, H, W), -0.5, 0.5) if affine else None}

    def fn(x, weight, bias):
        return F.layer_norm(x, (C, H, W), weight, bias, eps=1e-5)

    c.cfg(prefix, [N, C, H, W, int(affine), 1e-5])
    add_op_case(c, prefix, fn, inputs)
    x64 = inputs["x"].double().reshape(N, D)
    mean = x64.mean(dim=1)
    rstd = 1.0 / torch.sqrt(x64.var(dim=1, unbiased=False) + 1e-5)
    c.add(prefix + "mean", mean.float())
    c.add(prefix + "rstd", rstd.float())


# Deterministic inputs for the realistic-size case, which is too large to store
# (N=2, C=32, 28x28 is 50176 floats per tensor). check_parity.c regenerates
# them bit for bit: value i of stream s is
#     k = hash32(i + s * 0x9E3779B9 mod 2^32) >> 8        (24 bits)
#     lo + (hi - lo) * k / 2^24, evaluated in double, rounded to float32,
# with hash32 the "lowbias32" integer mixer below and lo, hi dyadic, so the
# double result is exact and both sides round it the same way.
def hash32(x):
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def det_stream(stream, n, lo, hi):
    vals = [lo + (hi - lo) * (hash32(i + stream * 0x9E3779B9) >> 8) / 16777216.0
            for i in range(n)]
    return torch.tensor(vals, dtype=torch.float64).float()


def layernorm_big(c):
    """The realistic size: N=2, C=32, H=W=28, with affine. Inputs come from
    det_stream (streams 1..4: x in [-3, 5), weight in [0.5, 1.5), bias in
    [-0.5, 0.5), dout in [-1, 1)). To stay small, out and dx are stored at
    every STRIDE-th flat element and dweight/dbias likewise; mean and rstd in
    full. cfg = [N, C, H, W, affine, eps, STRIDE]."""
    N, C, H, W, stride = 2, 32, 28, 28, 11
    D = C * H * W
    x = det_stream(1, N * D, -3.0, 5.0).reshape(N, C, H, W)
    weight = det_stream(2, D, 0.5, 1.5).reshape(C, H, W)
    bias = det_stream(3, D, -0.5, 0.5).reshape(C, H, W)
    dout = det_stream(4, N * D, -1.0, 1.0).reshape(N, C, H, W)

    def fn(x, weight, bias):
        return F.layer_norm(x, (C, H, W), weight, bias, eps=1e-5)

    inputs = {"x": x, "weight": weight, "bias": bias}
    out, g = grads64(fn, inputs, dout)
    check32("big.", fn, inputs, dout, out, g)
    p = "big."
    c.cfg(p, [N, C, H, W, 1, 1e-5, stride])
    # Checksums of the generated inputs, so a generator mismatch is reported
    # as such rather than as a kernel error.
    c.add(p + "x_head", x.reshape(-1)[:8])
    c.add(p + "x_sum", x.double().sum().float().reshape(1))
    c.add(p + "out_s", out.reshape(-1)[::stride])
    c.add(p + "dx_s", g["x"].reshape(-1)[::stride])
    c.add(p + "dweight_s", g["weight"].reshape(-1)[::stride])
    c.add(p + "dbias_s", g["bias"].reshape(-1)[::stride])
    x64 = x.double().reshape(N, D)
    c.add(p + "mean", x64.mean(dim=1).float())
    c.add(p + "rstd", (1.0 / torch.sqrt(x64.var(dim=1, unbiased=False) + 1e-5)).float())


def layernorm_fixture():
    c = Case()
    layernorm_small(c, "affine.", 3, 2, 3, 4, True)
    layernorm_small(c, "plain.", 1, 3, 5, 2, False)
    layernorm_small(c, "offset.", 2, 4, 3, 3, False, offset=10.0)
    layernorm_big(c)
    return c


def add_channel_fixture():
    """cfg = [N, C, H, W]; out = x + v[:, :, None, None], v is N x C."""
    c = Case()
    for prefix, N, C, H, W in [("b3.", 3, 4, 2, 5), ("b1.", 1, 5, 3, 3)]:
        inputs = {"x": torch.randn(N, C, H, W), "v": torch.randn(N, C)}
        c.cfg(prefix, [N, C, H, W])
        add_op_case(c, prefix, lambda x, v: x + v[:, :, None, None], inputs)
    return c


def concat_fixture():
    """cfg = [N, Ca, Cb, H, W]; out = cat([a, b], dim=1)."""
    c = Case()
    for prefix, N, Ca, Cb, H, W in [("b2.", 2, 3, 2, 3, 4), ("b1.", 1, 1, 4, 2, 5)]:
        inputs = {"a": torch.randn(N, Ca, H, W), "b": torch.randn(N, Cb, H, W)}
        c.cfg(prefix, [N, Ca, Cb, H, W])
        add_op_case(c, prefix, lambda a, b: torch.cat([a, b], dim=1), inputs)
    return c


def softmax_fixture():
    """cfg = [rows, cols]; softmax over the last axis."""
    c = Case()
    cases = [("attn.", torch.randn(8, 49) * 3.0),            # k over 7x7 positions
             ("large.", torch.randn(4, 13) * 5.0 + 80.0),      # needs max subtraction
             ("one.", torch.randn(3, 1))]                      # a single column
    for prefix, x in cases:
        c.cfg(prefix, list(x.shape))
        add_op_case(c, prefix, lambda x: torch.softmax(x, dim=-1), {"x": x})
    return c


def bmm_fixture():
    """Linear attention's products per (batch x head) entry, d x n each:
    context = k @ v^T (d x d), out = context^T @ q (d x n), with the gradients
    of sum(out * dout) w.r.t. q, k, v. cfg = [batch, d, n].
    "tt." is a generic C = A^T B^T with A stored K x M and B stored N x K,
    cfg = [batch, M, N, K]."""
    c = Case()
    for prefix, batch, d, n in [("attn.", 1, 32, 49), ("small.", 3, 4, 6)]:
        inputs = {"q": torch.randn(batch, d, n) * d ** -0.5,
                  "k": torch.softmax(torch.randn(batch, d, n), dim=-1),
                  "v": torch.randn(batch, d, n)}

        def fn(q, k, v):
            context = torch.bmm(k, v.transpose(1, 2))
            return torch.bmm(context.transpose(1, 2), q)

        c.cfg(prefix, [batch, d, n])
        add_op_case(c, prefix, fn, inputs)
        ctx = torch.bmm(inputs["k"].double(), inputs["v"].double().transpose(1, 2))
        c.add(prefix + "context", ctx.float())
    batch, M, N, K = 2, 3, 5, 4
    inputs = {"a": torch.randn(batch, K, M), "b": torch.randn(batch, N, K)}
    c.cfg("tt.", [batch, M, N, K])
    add_op_case(c, "tt.", lambda a, b: torch.bmm(a.transpose(1, 2), b.transpose(1, 2)),
                inputs)
    return c


def time_embed_fixture():
    """Forward only, in float32 as the report's code computes it.
    tau = float32(t / T). cnn.freq (16), cnn.out (N x 32) =
    [sin(f tau), cos(f tau) - 1]; unet<dim>.out (N x dim) for dim 32 and 16."""
    c = Case()
    pairs = [(0, 1000), (1, 2000), (1, 1000), (1, 200), (1, 100), (37, 100),
             (731, 1000), (1, 2), (1999, 2000), (199, 200), (1, 1)]
    tau = torch.tensor([t / T for t, T in pairs], dtype=torch.float32)
    c.add("tau", tau)

    # CNN (docs/models.md, Decoders: CNN): the report's frequencies buffer and
    # phase, float32.
    frequencies = torch.tensor([0.0] + [2 * math.pi * 1.5 ** (j - 1) for j in range(1, 16)])
    assert frequencies.dtype == torch.float32
    phase = frequencies[None, :] * tau[:, None]
    enc = torch.cat([torch.sin(phase), torch.cos(phase) - 1], dim=-1)
    c.add("cnn.freq", frequencies)
    c.add("cnn.out", enc)

    # UNet (docs/models.md, Decoders: UNet): the cold-diffusion
    # SinusoidalPosEmb, verbatim.
    for dim in (32, 16):
        half_dim = dim // 2
        emb = math.log(10000) / (half_dim - 1)
        emb = torch.exp(torch.arange(half_dim) * -emb)
        emb = tau[:, None] * emb[None, :]
        emb = torch.cat((emb.sin(), emb.cos()), dim=-1)
        assert emb.dtype == torch.float32
        c.add(f"unet{dim}.out", emb)
    return c


def loss_fixture():
    """mse and l1 with mean reduction. L = s * loss with s stored as "dout"
    (a scalar: the C backward's scale); dpred = dL/dpred. Some pred equal
    target exactly, where the l1 gradient is 0. cfg = [n]."""
    c = Case()
    for prefix, shape in [("a.", (3, 1, 5, 4)), ("b1.", (1, 1, 7, 7))]:
        pred = torch.randn(shape)
        target = torch.randn(shape)
        target.view(-1)[::5] = pred.view(-1)[::5]   # ties
        s = torch.tensor(float(torch.rand(()) * 2.0 + 0.5))
        c.cfg(prefix, [pred.numel()])
        c.add(prefix + "pred", pred)
        c.add(prefix + "target", target)
        c.add(prefix + "dout", s)
        for name, fn in (("mse", F.mse_loss), ("l1", F.l1_loss)):
            p64 = pred.double().requires_grad_(True)
            loss = fn(p64, target.double(), reduction="mean")
            (loss * s.double()).backward()
            c.add(prefix + name, loss.detach().float())
            c.add(prefix + name + ".dpred", p64.grad.float())
            p32 = pred.clone().requires_grad_(True)
            loss32 = fn(p32, target, reduction="mean")
            (loss32 * s).backward()
            assert abs(loss32.item() - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
            assert (p32.grad - p64.grad.float()).abs().max().item() <= 1e-6
    return c


FAMILIES = [
    ("conv2d.bin", conv2d_fixture),
    ("conv_transpose2d.bin", conv_transpose2d_fixture),
    ("linear.bin", linear_fixture),
    ("gelu.bin", gelu_fixture),
    ("layernorm.bin", layernorm_fixture),
    ("add_channel.bin", add_channel_fixture),
    ("concat.bin", concat_fixture),
    ("softmax.bin", softmax_fixture),
    ("bmm.bin", bmm_fixture),
    ("time_embed.bin", time_embed_fixture),
    ("loss.bin", loss_fixture),
]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, seed {SEED}")
    total = 0
    for fname, make in FAMILIES:
        torch.manual_seed(SEED)   # per file, so families are independent
        print(fname)
        c = make()
        path = os.path.join(outdir, fname)
        write_fixture(path, c.entries)
        size = os.path.getsize(path)
        total += size
        print(f"  -> {path}: {len(c.entries)} tensors, {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
