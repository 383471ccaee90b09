#!/usr/bin/python3
"""Write tests/reference/metrics.bin: independent reference values for the
metrics layer (lib/metrics, docs/models.md, Metrics), read by
tests/check_metrics.c.

Run where Debian's python3-torch is installed (with its numpy; piq and
scipy are not needed):

    /usr/bin/python3 tests/reference/make_metric_fixtures.py [outdir]

Image metrics. piq 0.8.0's recipe, written here again in PyTorch float64
with F.conv2d and the full 2-D window (the C code uses the separable form):
per-image min-max normalisation over C x H x W (so data_range = 1); SSIM
with piq's average pooling by f = max(1, round(min(H, W) / 256)) first
(F.avg_pool2d, kernel and stride f, remainders dropped), piq's
gaussian_filter(11, 1.5) (coordinates arange(11) - 5, exp(-(i^2 + j^2) /
(2 sigma^2)), normalised) applied to each channel (groups = C),
C1 = 0.01^2, C2 = 0.03^2, valid convolution, sigma^2 = G*x^2 - (G*x)^2,
the mean of the map over channels and pixels; PSNR = -10 log10(MSE_i +
1e-8). Each image case <c> holds:
    <c>.x, <c>.y            the inputs (float32, N x C x H x W, not normalised)
    <c>.mse, <c>.ssim, <c>.psnr   per-image values (N)
    <c>.summary             [RMSE, SSIM, PSNR] with the per_image reduction
Cases: "mnist" (three test digits from tests/data against a blurred and
noisy copy, another digit, and the inverted digit), "rgb" (3 channels,
non-square 12 x 17, smooth random images with correlated noise), "range"
(14 x 14 images in wildly different ranges: [-0.5, 0.5] against [0, 255]
and [1e4, 1e4 + 3]), so that normalisation matters.

Colour cases, C = 3, where SSIM is the mean over channels and pixels of
the per-channel maps and the normalisation spans all three channels:
"wide" (3 x 20 x 36) and "tall" (3 x 36 x 20), whose channels are
degraded differently (little noise, much noise, inverted; or blurred, in
channels of different ranges), so that each channel's SSIM differs and
the channel mean matters; and "pooled" (one 3 x 385 x 517 image, so piq
average-pools by f = round(385 / 256) = 2 and drops the last row and
column). The pooled images are too large to store: they are made from the
integer hash of make_fixtures.py (pooled_inputs below), which
tests/check_metrics.c repeats bit for bit, and the file holds
pooled.shape, pooled.x_sum and pooled.y_sum to catch a mismatch, then the
usual pooled.mse, .ssim, .psnr and .summary. These cases are seeded with
torch.manual_seed(20240602) after the others, so the cases above keep
their bytes.

Frechet distance. Each FD case <c> holds <c>.a (N1 x D) and <c>.b
(N2 x D) float32 features and <c>.fd, computed in float64 from the float32
features: unbiased covariances (torch.cov), and the trace term
tr((S1^1/2 S2 S1^1/2)^1/2) = tr((S1 S2)^1/2) from the eigenvalues of the
non-symmetric S1 S2 (torch.linalg.eigvals), which is a different route from
the C code's two symmetric eigendecompositions. Where S1 S2 is invertible a
Denman-Beavers iteration for sqrtm(S1 S2) must agree to 1e-10 (a third
route, the one scipy.linalg.sqrtm-based FID code takes in spirit).
Cases: "full" (D = 8, N1 = 60, N2 = 45, non-diagonal covariances, different
means) and "singular" (D = 12, N1 = 8, N2 = 10: both covariances are
singular, so the eigenvalue clamping is exercised).

Seeded with torch.manual_seed(20240601); single-threaded.
"""
import gzip
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import from_torch, write_fixture  # noqa: E402

SEED = 20240601
COLOUR_SEED = 20240602
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


# ---------------------------------------------------------- image metrics

def normalise(x):
    """Per-image min-max over C x H x W, float64."""
    x = x.double()
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    assert bool((hi > lo).all()), "a constant image"
    return ((flat - lo) / (hi - lo)).reshape(x.shape)


def gaussian_filter(size=11, sigma=1.5):
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = coords ** 2
    g = torch.exp(-(g.unsqueeze(0) + g.unsqueeze(1)) / (2 * sigma ** 2))
    return g / g.sum()


def ssim_per_image(x, y):
    """piq 0.8.0 ssim(..., data_range=1, reduction='none') in float64."""
    f = max(1, round(min(x.shape[-2:]) / 256))
    if f > 1:
        x = F.avg_pool2d(x, kernel_size=f)
        y = F.avg_pool2d(y, kernel_size=f)
    C = x.shape[1]
    k = gaussian_filter().repeat(C, 1, 1, 1).to(x.dtype)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def conv(t):
        return F.conv2d(t, weight=k, stride=1, padding=0, groups=C)

    mu_x, mu_y = conv(x), conv(y)
    sxx = conv(x * x) - mu_x ** 2
    syy = conv(y * y) - mu_y ** 2
    sxy = conv(x * y) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ss = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1) * cs
    return ss.mean(dim=(-1, -2)).mean(dim=1)


def image_case(out, name, x, y, store_inputs=True):
    x = x.float()
    y = y.float()
    xn, yn = normalise(x), normalise(y)
    mse = ((xn - yn) ** 2).reshape(x.shape[0], -1).mean(dim=1)
    psnr = -10 * torch.log10(mse + 1e-8)
    ssim = ssim_per_image(xn, yn)
    summary = torch.tensor([math.sqrt(mse.mean().item()), ssim.mean().item(),
                            psnr.mean().item()], dtype=torch.float64)
    # The float32 route, as piq itself computes, must agree closely: a
    # sanity check of this script, not of the C code.
    s32 = ssim_per_image(xn.float(), yn.float()).double()
    assert (s32 - ssim).abs().max().item() < 1e-5, (name, s32, ssim)
    # piq's channel average, checked once more by hand: the mean of the
    # 1-channel SSIMs of the (already normalised) channel planes.
    planes = torch.stack([ssim_per_image(xn[:, c:c + 1], yn[:, c:c + 1])
                          for c in range(x.shape[1])])
    assert (planes.mean(dim=0) - ssim).abs().max().item() < 1e-12, (name, planes, ssim)
    keys = (("x", x), ("y", y)) if store_inputs else ()
    for key, t in keys + (("mse", mse), ("ssim", ssim), ("psnr", psnr), ("summary", summary)):
        out.append(from_torch(f"{name}.{key}", t))
    print(f"{name}: N={x.shape[0]} C={x.shape[1]} {x.shape[2]}x{x.shape[3]} "
          f"ssim={[round(v, 6) for v in ssim.tolist()]} "
          f"psnr={[round(v, 4) for v in psnr.tolist()]} summary={summary.tolist()}")


def load_digits(n):
    with gzip.open(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read()
    assert int.from_bytes(raw[:4], "big") == 2051
    pix = torch.tensor(list(raw[16:16 + n * 784]), dtype=torch.float32)
    return pix.reshape(n, 1, 28, 28) / 255.0 - 0.5


def blur(x, sigma):
    r = 3
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    C = x.shape[1]
    kh = k.reshape(1, 1, 1, -1).repeat(C, 1, 1, 1)
    kv = k.reshape(1, 1, -1, 1).repeat(C, 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), kh, groups=C)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), kv, groups=C)


def image_cases(out):
    d = load_digits(4)
    x = d[:3]
    y = torch.stack([
        (blur(d[0:1], 1.2) + 0.1 * torch.randn(1, 1, 28, 28))[0],  # a degraded copy
        d[3],                                                        # another digit
        -d[2] + 0.05 * torch.randn(1, 28, 28),                       # inverted
    ])
    image_case(out, "mnist", x, y)

    x = blur(torch.rand(2, 3, 12, 17), 1.5)
    y = x + 0.2 * blur(torch.randn(2, 3, 12, 17), 0.8)
    image_case(out, "rgb", x, y)

    x = torch.rand(2, 1, 14, 14) - 0.5
    y = torch.stack([(x[0] + 0.5) * 255.0 + 20.0 * torch.randn(1, 14, 14),
                     1e4 + 3.0 * torch.rand(1, 14, 14)])
    image_case(out, "range", x, y)


# ------------------------------------------------------------ colour cases

# The lowbias32 integer mixer of make_fixtures.py, on numpy uint32 arrays
# (whose products wrap modulo 2^32, as C's uint32_t do).
def hash32(x):
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def pooled_inputs(C, H, W):
    """The pooled case's x and y (1 x C x H x W), integers / 256, so exact
    in float32. With k the flat index (c H + i) W + j and
    noise(s, k) = hash32(k + s * 0x9E3779B9 mod 2^32):
        b(c, i, j) = (3 (i // 16) + 5 (j // 16) + 2 c) mod 8   (16-pixel blocks)
        x = 24 b(c, i, j) + (noise(1, k) >> 27)
        y = 24 b(0, i, j)         + (noise(2, k) >> 26)   in channel 0 (more noise)
            24 (7 - b(1, i, j))   + (noise(2, k) >> 27)   in channel 1 (inverted)
            24 b(2, i + 8, j + 8) + (noise(2, k) >> 27)   in channel 2 (shifted)"""
    c, i, j = np.meshgrid(np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    k = ((c * H + i) * W + j).astype(np.uint64)

    def noise(s, shift):
        return hash32((k + s * 0x9E3779B9) % 2 ** 32) >> np.uint32(shift)

    def blocks(cc, ii, jj):
        return (3 * (ii // 16) + 5 * (jj // 16) + 2 * cc) % 8

    b = blocks(c, i, j)
    x = 24 * b + noise(1, 27)
    by = np.where(c == 0, b, np.where(c == 1, 7 - b, blocks(c, i + 8, j + 8)))
    y = 24 * by + noise(2, np.where(c == 0, 26, 27).astype(np.uint32))

    def to_tensor(v):
        return torch.from_numpy(v.astype(np.float64) / 256.0).float().reshape(1, C, H, W)

    return to_tensor(x), to_tensor(y)


def colour_cases(out):
    # Smooth images; channel 0 lightly noisy, channel 1 heavily, channel 2
    # inverted with a little noise.
    x = blur(torch.rand(3, 3, 20, 36), 1.5)
    y = torch.cat([x[:, 0:1] + 0.02 * blur(torch.randn(3, 1, 20, 36), 0.8),
                   x[:, 1:2] + 0.3 * torch.randn(3, 1, 20, 36),
                   -x[:, 2:3] + 0.05 * torch.randn(3, 1, 20, 36)], dim=1)
    image_case(out, "wide", x, y)

    # Channels in different ranges, normalised together as one image;
    # y is a blurred, noisy copy.
    x = blur(torch.rand(2, 3, 36, 20), 2.0) * torch.tensor([1.0, 4.0, 0.25]).reshape(1, 3, 1, 1)
    x = x + torch.tensor([0.0, -2.0, 3.0]).reshape(1, 3, 1, 1)
    y = blur(x, 1.2) + 0.05 * x.std() * torch.randn(2, 3, 36, 20)
    image_case(out, "tall", x, y)

    C, H, W = 3, 385, 517
    x, y = pooled_inputs(C, H, W)
    assert max(1, round(min(H, W) / 256)) == 2
    out.append(("pooled.shape", (4,), [1, C, H, W]))
    # Sums of multiples of 1/256 below 2^19: exact in double in any order.
    out.append(("pooled.x_sum", (1,), [x.double().sum().item()]))
    out.append(("pooled.y_sum", (1,), [y.double().sum().item()]))
    image_case(out, "pooled", x, y, store_inputs=False)


# ------------------------------------------------------- Frechet distance

def denman_beavers(a, iters=60):
    y, z = a.clone(), torch.eye(a.shape[0], dtype=a.dtype)
    for _ in range(iters):
        y, z = 0.5 * (y + torch.linalg.inv(z)), 0.5 * (z + torch.linalg.inv(y))
    return y


def fd_case(out, name, a, b, invertible):
    a = a.float()
    b = b.float()
    A, B = a.double(), b.double()
    mu1, mu2 = A.mean(dim=0), B.mean(dim=0)
    s1, s2 = torch.cov(A.T, correction=1), torch.cov(B.T, correction=1)
    ev = torch.linalg.eigvals(s1 @ s2)
    tr_sqrt = torch.sqrt(ev.real.clamp(min=0)).sum().item()
    if invertible:
        db = torch.trace(denman_beavers(s1 @ s2)).item()
        assert abs(db - tr_sqrt) <= 1e-10 * abs(tr_sqrt), (db, tr_sqrt)
    fd = ((mu1 - mu2) ** 2).sum().item() + torch.trace(s1).item() + \
        torch.trace(s2).item() - 2 * tr_sqrt
    out.append(from_torch(f"{name}.a", a))
    out.append(from_torch(f"{name}.b", b))
    out.append((f"{name}.fd", (1,), [fd]))
    print(f"{name}: a {tuple(a.shape)} b {tuple(b.shape)} fd={fd!r} "
          f"(min eigenvalue of S1 S2: {ev.real.min().item():.3g})")


def fd_cases(out):
    D = 8
    l1 = torch.randn(D, D) * 0.5 + torch.eye(D)
    l2 = torch.randn(D, D) * 0.3 + 2.0 * torch.eye(D)
    a = torch.randn(60, D) @ l1 + torch.linspace(-1, 1, D)
    b = torch.randn(45, D) @ l2 + 0.5
    fd_case(out, "full", a, b, True)

    D = 12
    a = torch.randn(8, D) @ (torch.randn(D, D) * 0.4 + torch.eye(D))
    b = torch.randn(10, D) * 1.5 + 0.25
    fd_case(out, "singular", a, b, False)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else HERE
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    out = []
    image_cases(out)
    fd_cases(out)
    torch.manual_seed(COLOUR_SEED)
    colour_cases(out)
    path = os.path.join(outdir, "metrics.bin")
    write_fixture(path, out)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
