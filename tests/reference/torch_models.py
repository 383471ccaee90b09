"""PyTorch definitions of the report's two decoders (docs/models.md, Decoders).

    CNNDecoder   the report's Part 1 decoder (docs/models.md, Decoders: CNN)
    UNetDecoder  the cold-diffusion ConvNeXt UNet of Part 2 (Decoders: UNet)

Both are built from a configuration dict whose keys are those of the
libcolddiff checkpoint entries "decoder.<key>" (docs/checkpoint-format.md);
CNN_DEFAULTS and UNET_DEFAULTS are the report's models. The state_dict names
and layouts are exactly the report's, so its weights load with
load_state_dict(strict=True), and parameter counts are 291,217 (CNN) and
3,733,172 (UNet).

Precision. The time encodings are part of the model (docs/models.md, Decoders):
their phases are float32 products, as in the report's code, whatever dtype
the rest of the model runs in; sin and cos of those float32 phases are taken
in float64 and rounded once to float32, as the C library does (the
report's float32 torch.sin agrees to an ulp). A model converted with
.double() therefore computes the float64 reference of the float32 model.

Shared by tests/reference/make_decoder_fixtures.py, tests/python/test_convert.py
and (for cross-checking shapes) examples/python/convert_torch.py's tests.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CNN_DEFAULTS = {
    "channels": 1,
    "height": 28,
    "width": 28,
    "hidden": (16, 32, 32, 16),
    "kernel": 7,
    "time_freqs": 16,
    "time_hidden": 128,
    "time_layers": 3,
    "classes": 0,
}

UNET_DEFAULTS = {
    "channels": 1,
    "dim": 32,
    "dim_mults": (1, 2, 4),
    "heads": 4,
    "head_dim": 32,
    "convnext_mult": 2,
    "classes": 0,
}

LN_EPS = 1e-5


def cnn_config(**overrides):
    """The report's CNN configuration with some keys replaced."""
    return _merge(CNN_DEFAULTS, overrides)


def unet_config(**overrides):
    """The report's UNet configuration with some keys replaced."""
    return _merge(UNET_DEFAULTS, overrides)


def _merge(defaults, overrides):
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
    cfg = dict(defaults)
    cfg.update(overrides)
    return cfg


def _accurate_sin_cos(phase):
    """sin and cos of a float32 phase, computed in float64 and rounded once."""
    p = phase.double()
    return torch.sin(p).float(), torch.cos(p).float()


# ---------------------------------------------------------------- CNN (4.1)

def cnn_frequencies(n=16):
    """f_0 = 0, f_j = 2 pi 1.5^(j-1): doubles rounded once to float32."""
    return torch.tensor([0.0] + [2 * math.pi * 1.5 ** (j - 1) for j in range(1, n)],
                        dtype=torch.float32)


class CNNBlock(nn.Module):
    """Conv2d k x k (padding k // 2), LayerNorm over (C, H, W) with a C x H x W
    affine, GELU (erf form). Names: net.0 (conv), net.1 (LayerNorm)."""

    def __init__(self, c_in, c_out, kernel, height, width):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2),
            nn.LayerNorm((c_out, height, width), eps=LN_EPS),
            nn.GELU(),
        )

    def forward(self, x):
        return self.net(x)


class CNNDecoder(nn.Module):
    """blocks.{0..L-1}: CNNBlock; blocks.L: Conv2d 3 x 3 to `channels`;
    time_embed.{0,2,..,2M}: Linear layers with GELUs between them; the
    buffer `frequencies`. The time embedding is added to block 0's output."""

    def __init__(self, cfg=None):
        super().__init__()
        cfg = cnn_config(**(cfg or {}))
        self.cfg = cfg
        hidden = list(cfg["hidden"])
        blocks, c_in = [], cfg["channels"]
        for h in hidden:
            blocks.append(CNNBlock(c_in, h, cfg["kernel"], cfg["height"], cfg["width"]))
            c_in = h
        blocks.append(nn.Conv2d(c_in, cfg["channels"], 3, padding=1))
        self.blocks = nn.ModuleList(blocks)
        self.time_embed = nn.Sequential(*_mlp_layers(
            2 * cfg["time_freqs"], cfg["time_hidden"], hidden[0], cfg["time_layers"]))
        self.register_buffer("frequencies", cnn_frequencies(cfg["time_freqs"]))
        _add_label_embed(self, cfg, hidden[0])

    def time_encoding(self, tau):
        """[sin(f tau), cos(f tau) - 1] with the float32 phase fl32(f * tau)."""
        phase = self.frequencies.float()[None, :] * tau.float()[:, None]
        s, c = _accurate_sin_cos(phase)
        return torch.cat([s, c - 1], dim=-1)

    def forward(self, z, tau, labels=None):
        emb = self.time_embed(self.time_encoding(tau).to(z.dtype))
        emb = _with_labels(self, emb, labels)
        x = self.blocks[0](z) + emb[:, :, None, None]
        for block in self.blocks[1:]:
            x = block(x)
        return x


def _add_label_embed(model, cfg, width):
    """Class conditioning: one row per class and a last row for "no class",
    registered last so the other parameters keep their order."""
    if cfg["classes"] > 0:
        model.label_embed = nn.Embedding(cfg["classes"] + 1, width)


def _with_labels(model, emb, labels):
    """emb + the label rows; labels None or -1 pick the "no class" row."""
    if model.cfg["classes"] == 0:
        return emb
    k = model.cfg["classes"]
    if labels is None:
        labels = torch.full((emb.shape[0],), -1, dtype=torch.long)
    rows = torch.where(labels < 0, torch.full_like(labels, k), labels).long()
    return emb + model.label_embed(rows).to(emb.dtype)


def _mlp_layers(n_in, width, n_out, hidden_layers):
    """Linear n_in->width, (GELU, Linear width->width) x (hidden_layers - 1),
    GELU, Linear width->n_out; a single Linear when hidden_layers is 0."""
    sizes = [n_in] + [width] * hidden_layers + [n_out]
    layers = []
    for j in range(len(sizes) - 1):
        if j > 0:
            layers.append(nn.GELU())
        layers.append(nn.Linear(sizes[j], sizes[j + 1]))
    return layers


# ---------------------------------------------------------------- UNet (4.2)

def layer_norm_chw(x):
    """The report's parameter-free F.layer_norm over (C, H, W), eps 1e-5."""
    return F.layer_norm(x, x.shape[1:], eps=LN_EPS)


class SinusoidalPosEmb(nn.Module):
    """The cold-diffusion embedding: float32 frequencies and phases as in the
    original code; sin and cos of the float32 phase taken accurately."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        half_dim = self.dim // 2
        emb = math.log(10000) / (half_dim - 1)
        emb = torch.exp(torch.arange(half_dim, device=x.device) * -emb)
        emb = x.float()[:, None] * emb[None, :]
        s, c = _accurate_sin_cos(emb)
        return torch.cat((s, c), dim=-1)


class ConvNextBlock(nn.Module):
    """h = ds_conv(x) (+ mlp(temb)); h = layer_norm_chw(h); h = net(h);
    out = h + res_conv(x). net.0 and net.2 are the 3 x 3 convolutions."""

    def __init__(self, dim, dim_out, *, time_emb_dim=None, mult=2):
        super().__init__()
        self.mlp = (nn.Sequential(nn.GELU(), nn.Linear(time_emb_dim, dim))
                    if time_emb_dim is not None else None)
        self.ds_conv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim_out * mult, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(dim_out * mult, dim_out, 3, padding=1),
        )
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, time_emb=None):
        h = self.ds_conv(x)
        if self.mlp is not None:
            h = h + self.mlp(time_emb)[:, :, None, None]
        h = self.net(layer_norm_chw(h))
        return h + self.res_conv(x)


class LinearAttention(nn.Module):
    """to_qkv: Conv1x1 dim -> 3 heads dim_head (no bias); to_out: Conv1x1."""

    def __init__(self, dim, heads=4, dim_head=32):
        super().__init__()
        self.scale = dim_head ** -0.5
        self.heads = heads
        hidden_dim = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden_dim * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w)
                   for t in self.to_qkv(x).chunk(3, dim=1))
        q = q * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(out.reshape(b, -1, h, w))


class PreNorm(nn.Module):
    """fn(layer_norm_chw(x)); the report's norm has no parameters."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(layer_norm_chw(x))


class Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


def _attention(dim, cfg):
    return Residual(PreNorm(LinearAttention(dim, cfg["heads"], cfg["head_dim"])))


class UNetDecoder(nn.Module):
    """The cold-diffusion Unet(dim, dim_mults, channels) with the report's
    changes: every ConvNeXt block (the first included) normalises with the
    parameter-free layer_norm_chw, and so does PreNorm. The level-0 skip is
    pushed and never popped, as in the original."""

    def __init__(self, cfg=None):
        super().__init__()
        cfg = unet_config(**(cfg or {}))
        self.cfg = cfg
        dim, mult = cfg["dim"], cfg["convnext_mult"]
        dims = [cfg["channels"]] + [dim * m for m in cfg["dim_mults"]]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.time_mlp = nn.Sequential(
            SinusoidalPosEmb(dim), nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        levels = len(in_out)
        for ind, (dim_in, dim_out) in enumerate(in_out):
            is_last = ind >= levels - 1
            self.downs.append(nn.ModuleList([
                ConvNextBlock(dim_in, dim_out, time_emb_dim=dim, mult=mult),
                ConvNextBlock(dim_out, dim_out, time_emb_dim=dim, mult=mult),
                _attention(dim_out, cfg),
                nn.Conv2d(dim_out, dim_out, 4, 2, 1) if not is_last else nn.Identity(),
            ]))
        mid = dims[-1]
        self.mid_block1 = ConvNextBlock(mid, mid, time_emb_dim=dim, mult=mult)
        self.mid_attn = _attention(mid, cfg)
        self.mid_block2 = ConvNextBlock(mid, mid, time_emb_dim=dim, mult=mult)
        for dim_in, dim_out in reversed(in_out[1:]):
            self.ups.append(nn.ModuleList([
                ConvNextBlock(dim_out * 2, dim_in, time_emb_dim=dim, mult=mult),
                ConvNextBlock(dim_in, dim_in, time_emb_dim=dim, mult=mult),
                _attention(dim_in, cfg),
                nn.ConvTranspose2d(dim_in, dim_in, 4, 2, 1),
            ]))
        self.final_conv = nn.Sequential(
            ConvNextBlock(dim, dim, mult=mult), nn.Conv2d(dim, cfg["channels"], 1))
        _add_label_embed(self, cfg, dim)

    def forward(self, z, tau, labels=None):
        t = self.time_mlp[0](tau).to(z.dtype)
        for layer in list(self.time_mlp)[1:]:
            t = layer(t)
        # The label rows join before the GELU that every block applies.
        t = _with_labels(self, t, labels)
        x, skips = z, []
        for block1, block2, attn, down in self.downs:
            x = attn(block2(block1(x, t), t))
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, t)), t)
        for block1, block2, attn, up in self.ups:
            x = torch.cat((x, skips.pop()), dim=1)
            x = up(attn(block2(block1(x, t), t)))
        return self.final_conv[1](self.final_conv[0](x))


# ---------------------------------------------------------------- helpers

def make_decoder(kind, cfg=None):
    """kind "cnn" or "unet"."""
    if kind == "cnn":
        return CNNDecoder(cfg)
    if kind == "unet":
        return UNetDecoder(cfg)
    raise ValueError(f"unknown decoder type {kind!r}")


def param_count(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    for kind, want in (("cnn", 291217), ("unet", 3733172)):
        n = param_count(make_decoder(kind))
        print(f"{kind}: {n} parameters (the report's: {want})")
        assert n == want
