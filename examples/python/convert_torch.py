#!/usr/bin/env python3
"""Convert the report's decoders between PyTorch and libcolddiff checkpoints.

    convert_torch.py to-cdm IN.pt OUT.cdm [--type cnn|unet] [--heads N] [--head-dim N]
                            [--degradation auto|noise|blur] [--kernel-size K]
    convert_torch.py to-pt IN.cdm OUT.pt [--report]

to-cdm reads a PyTorch state_dict (torch.load) of the report's CNN or UNet
(tensor names: docs/checkpoint-format.md) and writes a libcolddiff checkpoint that
cd_decoder_load() opens. The input is either
  - a plain decoder state_dict (`decoder.state_dict()`), or
  - a report checkpoint (`torch.save(diffusion_model.state_dict())`): the
    decoder tensors carry the prefix "decoder.", and the schedule buffers
    beta_t and alpha_t (float32, length T+1) come along.
The configuration is inferred from the tensor shapes. The one thing shapes
cannot tell is how the UNet's attention width splits into heads: 4 heads
(the report's) are assumed unless --heads or --head-dim says otherwise.
A CNN's `frequencies` buffer must hold the report's time-encoding frequencies
(docs/models.md, Decoders: CNN); it is checked and not stored (libcolddiff
computes it).

Checkpoint content (docs/checkpoint-format.md): the decoder.* CONF entries,
every parameter by its state_dict name, and, when the input has beta_t and
alpha_t, the entries that make it an inference model (cd_model_load, and
colddiff info, sample, restore and eval, take it as it is):
    schedule.beta       float32 array, beta_t for t = 0..T, verbatim
    schedule.alpha_bar  float32 array, alpha_t for t = 0..T, verbatim
    schedule.T          int64, T
    decoder.T           int64, T (the decoder was trained for it)
    degradation.kind    "noise", or "blur" (with degradation.kernel_size,
                        --kernel-size, 11 by default, and degradation.padding
                        0, reflect) for the report's cold-diffusion run.
                        --degradation auto takes blur when a beta_t is 1
                        (the blur's standard deviation; no noise schedule
                        can have it), noise otherwise.
    model.kind          "inference"
A plain decoder state_dict has no schedule, so its output is a decoder-only
file: cd_decoder_load opens it, but sampling needs the schedule too.

to-pt goes back: a plain decoder state_dict (with the CNN's `frequencies`
buffer), or with --report a report checkpoint (prefix "decoder." plus
beta_t and alpha_t, which the .cdm must then hold).

PyTorch is needed only when converting; the file format is cdm_format.py
(standard library only). Errors print one line and exit with status 1.
"""
import argparse
import array
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdm_format  # noqa: E402

PROG = "convert_torch.py"
REPORT_PREFIX = "decoder."
SCHEDULE_BUFFERS = ("beta_t", "alpha_t")

# The report's models, as libcolddiff's defaults.
CNN_DEFAULTS = {"channels": 1, "height": 28, "width": 28, "hidden": (16, 32, 32, 16),
                "kernel": 7, "time_freqs": 16, "time_hidden": 128, "time_layers": 3}
UNET_DEFAULTS = {"dim": 32, "dim_mults": (1, 2, 4), "heads": 4, "head_dim": 32,
                 "convnext_mult": 2}
SCALAR_KEYS = ("channels", "height", "width", "kernel", "time_freqs", "time_hidden",
               "time_layers", "dim", "heads", "head_dim", "convnext_mult")
LIST_KEYS = ("hidden", "dim_mults")


class ConversionError(Exception):
    pass


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ConversionError(f"this conversion needs PyTorch ({e})")
    return torch


# ---------------------------------------------------------------- shapes

def cnn_shapes(cfg):
    """[(name, shape)] of the CNN's parameters in state_dict order (4.1)."""
    out, c_in, k = [], cfg["channels"], cfg["kernel"]
    for i, h in enumerate(cfg["hidden"]):
        out += [(f"blocks.{i}.net.0.weight", (h, c_in, k, k)), (f"blocks.{i}.net.0.bias", (h,)),
                (f"blocks.{i}.net.1.weight", (h, cfg["height"], cfg["width"])),
                (f"blocks.{i}.net.1.bias", (h, cfg["height"], cfg["width"]))]
        c_in = h
    last = len(cfg["hidden"])
    out += [(f"blocks.{last}.weight", (cfg["channels"], c_in, 3, 3)),
            (f"blocks.{last}.bias", (cfg["channels"],))]
    sizes = [2 * cfg["time_freqs"]] + [cfg["time_hidden"]] * cfg["time_layers"] \
        + [cfg["hidden"][0]]
    for j in range(len(sizes) - 1):
        out += [(f"time_embed.{2 * j}.weight", (sizes[j + 1], sizes[j])),
                (f"time_embed.{2 * j}.bias", (sizes[j + 1],))]
    return out


def _convnext_shapes(prefix, d_in, d_out, cfg, timed=True):
    dim, mult = cfg["dim"], cfg["convnext_mult"]
    out = []
    if timed:
        out += [(f"{prefix}.mlp.1.weight", (d_in, dim)), (f"{prefix}.mlp.1.bias", (d_in,))]
    out += [(f"{prefix}.ds_conv.weight", (d_in, 1, 7, 7)), (f"{prefix}.ds_conv.bias", (d_in,)),
            (f"{prefix}.net.0.weight", (d_out * mult, d_in, 3, 3)),
            (f"{prefix}.net.0.bias", (d_out * mult,)),
            (f"{prefix}.net.2.weight", (d_out, d_out * mult, 3, 3)),
            (f"{prefix}.net.2.bias", (d_out,))]
    if d_in != d_out:
        out += [(f"{prefix}.res_conv.weight", (d_out, d_in, 1, 1)),
                (f"{prefix}.res_conv.bias", (d_out,))]
    return out


def _attention_shapes(prefix, d, cfg):
    hidden = cfg["heads"] * cfg["head_dim"]
    return [(f"{prefix}.fn.fn.to_qkv.weight", (3 * hidden, d, 1, 1)),
            (f"{prefix}.fn.fn.to_out.weight", (d, hidden, 1, 1)),
            (f"{prefix}.fn.fn.to_out.bias", (d,))]


def unet_shapes(cfg):
    """[(name, shape)] of the UNet's parameters in state_dict order (4.2)."""
    dim = cfg["dim"]
    dims = [cfg["channels"]] + [dim * m for m in cfg["dim_mults"]]
    in_out = list(zip(dims[:-1], dims[1:]))
    out = [("time_mlp.1.weight", (4 * dim, dim)), ("time_mlp.1.bias", (4 * dim,)),
           ("time_mlp.3.weight", (dim, 4 * dim)), ("time_mlp.3.bias", (dim,))]
    for i, (d_in, d_out) in enumerate(in_out):
        out += _convnext_shapes(f"downs.{i}.0", d_in, d_out, cfg)
        out += _convnext_shapes(f"downs.{i}.1", d_out, d_out, cfg)
        out += _attention_shapes(f"downs.{i}.2", d_out, cfg)
        if i < len(in_out) - 1:
            out += [(f"downs.{i}.3.weight", (d_out, d_out, 4, 4)), (f"downs.{i}.3.bias", (d_out,))]
    # The original registers `ups` before the middle blocks, hence this order.
    for j, (d_in, d_out) in enumerate(reversed(in_out[1:])):
        out += _convnext_shapes(f"ups.{j}.0", 2 * d_out, d_in, cfg)
        out += _convnext_shapes(f"ups.{j}.1", d_in, d_in, cfg)
        out += _attention_shapes(f"ups.{j}.2", d_in, cfg)
        out += [(f"ups.{j}.3.weight", (d_in, d_in, 4, 4)), (f"ups.{j}.3.bias", (d_in,))]
    mid = dims[-1]
    out += _convnext_shapes("mid_block1", mid, mid, cfg)
    out += _attention_shapes("mid_attn", mid, cfg)
    out += _convnext_shapes("mid_block2", mid, mid, cfg)
    out += _convnext_shapes("final_conv.0", dim, dim, cfg, timed=False)
    out += [("final_conv.1.weight", (cfg["channels"], dim, 1, 1)),
            ("final_conv.1.bias", (cfg["channels"],))]
    return out


def expected_shapes(kind, cfg):
    shapes = cnn_shapes(cfg) if kind == "cnn" else unet_shapes(cfg)
    if cfg.get("classes", 0) > 0:
        # The class table comes last, one row per class and one for none.
        width = cfg["hidden"][0] if kind == "cnn" else cfg["dim"]
        shapes.append(("label_embed.weight", (cfg["classes"] + 1, width)))
    return shapes


def infer_classes(shapes):
    """The class count of a class-conditional decoder's table, else 0."""
    table = shapes.get("label_embed.weight")
    if table is None:
        return 0
    if len(table) != 2 or table[0] < 2:
        raise ConversionError(f"label_embed.weight has shape {table}; expected "
                              "(classes + 1, width)")
    return table[0] - 1


def cnn_frequencies(n):
    """The CNN's frequencies: f_0 = 0, f_j = 2 pi 1.5^(j-1), rounded once to float32."""
    return array.array("f", [0.0] + [2 * math.pi * 1.5 ** (j - 1) for j in range(1, n)])


# ---------------------------------------------------------------- inference

def detect_type(shapes, forced):
    if "blocks.0.net.0.weight" in shapes:
        kind = "cnn"
    elif "time_mlp.1.weight" in shapes:
        kind = "unet"
    else:
        kind = None
    if forced and kind and forced != kind:
        raise ConversionError(f"--type {forced}, but the tensors are those of a {kind}")
    kind = kind or forced
    if not kind:
        raise ConversionError("cannot tell the decoder type (no blocks.0.net.0.weight and "
                              "no time_mlp.1.weight); is this a decoder state_dict?")
    return kind


def _shape(shapes, name):
    if name not in shapes:
        raise ConversionError(f"missing tensor {name}")
    return shapes[name]


def _divide(a, b, what):
    if b <= 0 or a % b:
        raise ConversionError(f"{what}: {a} is not a multiple of {b}")
    return a // b


def infer_cnn_config(shapes):
    cfg = dict(CNN_DEFAULTS)
    first = _shape(shapes, "blocks.0.net.0.weight")
    if len(first) != 4 or first[2] != first[3] or first[2] % 2 == 0:
        raise ConversionError(f"blocks.0.net.0.weight has shape {first}; expected a square "
                              "odd kernel (out, in, k, k)")
    hidden = []
    while f"blocks.{len(hidden)}.net.0.weight" in shapes:
        hidden.append(shapes[f"blocks.{len(hidden)}.net.0.weight"][0])
    ln = _shape(shapes, "blocks.0.net.1.weight")
    if len(ln) != 3:
        raise ConversionError(f"blocks.0.net.1.weight has shape {ln}; expected (C, H, W)")
    mlp = []
    while f"time_embed.{2 * len(mlp)}.weight" in shapes:
        mlp.append(shapes[f"time_embed.{2 * len(mlp)}.weight"])
    if not mlp:
        raise ConversionError("missing tensor time_embed.0.weight")
    cfg.update(channels=first[1], kernel=first[2], hidden=tuple(hidden), height=ln[1],
               width=ln[2], time_layers=len(mlp) - 1,
               time_freqs=_divide(mlp[0][1], 2, "time_embed.0.weight inputs"))
    if len(mlp) > 1:
        cfg["time_hidden"] = mlp[0][0]
    cfg["classes"] = infer_classes(shapes)
    return cfg


def infer_unet_config(shapes, heads=None, head_dim=None):
    cfg = dict(UNET_DEFAULTS)
    dim = _shape(shapes, "time_mlp.1.weight")[1]
    widths = []
    while f"downs.{len(widths)}.1.ds_conv.weight" in shapes:
        widths.append(shapes[f"downs.{len(widths)}.1.ds_conv.weight"][0])
    if not widths:
        raise ConversionError("missing tensor downs.0.1.ds_conv.weight")
    mults = tuple(_divide(w, dim, f"downs.{i}.1 width") for i, w in enumerate(widths))
    expansion = _shape(shapes, "downs.0.0.net.0.weight")[0]
    hidden = _divide(_shape(shapes, "downs.0.2.fn.fn.to_qkv.weight")[0], 3,
                     "downs.0.2.fn.fn.to_qkv.weight outputs")
    cfg.update(channels=_shape(shapes, "downs.0.0.ds_conv.weight")[0], dim=dim,
               dim_mults=mults,
               convnext_mult=_divide(expansion, widths[0], "downs.0.0.net.0.weight outputs"))
    cfg["heads"], cfg["head_dim"] = split_heads(hidden, heads, head_dim)
    cfg["classes"] = infer_classes(shapes)
    return cfg


def split_heads(hidden, heads, head_dim):
    """heads x head_dim = hidden (the attention width); 4 heads by default."""
    if heads is None and head_dim is None:
        heads = UNET_DEFAULTS["heads"]
        if hidden % heads:
            raise ConversionError(f"the attention width {hidden} does not split into "
                                  f"{heads} heads; give --heads or --head-dim")
    if heads is None:
        heads = _divide(hidden, head_dim, "attention width / --head-dim")
    if head_dim is None:
        head_dim = _divide(hidden, heads, "attention width / --heads")
    if heads * head_dim != hidden:
        raise ConversionError(f"--heads {heads} x --head-dim {head_dim} is not the attention "
                              f"width {hidden}")
    return heads, head_dim


def check_shapes(kind, cfg, shapes):
    """Every expected tensor present with its shape, and nothing else."""
    want = dict(expected_shapes(kind, cfg))
    for name, shape in want.items():
        got = _shape(shapes, name)
        if tuple(got) != tuple(shape):
            raise ConversionError(f"tensor {name} has shape {tuple(got)}, the inferred "
                                  f"{kind} configuration needs {tuple(shape)}")
    extra = [name for name in shapes if name not in want]
    if extra:
        raise ConversionError(f"unexpected tensor {extra[0]} (not a parameter of the "
                              f"inferred {kind} configuration)")


# ---------------------------------------------------------------- to-cdm

def load_state_dict(path):
    torch = _torch()
    try:
        try:   # tensors only: unpickling arbitrary objects can run code
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:   # torch < 1.13 has no weights_only
            sd = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file")
    except Exception as e:  # torch raises many kinds on a bad file
        raise ConversionError(f"{path}: not a PyTorch file torch.load can read ({e})")
    if hasattr(sd, "state_dict") and not hasattr(sd, "items"):
        raise ConversionError(f"{path} holds a whole module; save its state_dict() instead")
    if not hasattr(sd, "items") or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ConversionError(f"{path} is not a state_dict (a mapping of names to tensors)")
    return sd


def split_checkpoint(sd):
    """(decoder tensors without the prefix, schedule buffers or None)."""
    report = any(k.startswith(REPORT_PREFIX) for k in sd)
    decoder, schedule = {}, {}
    for name, t in sd.items():
        if name in SCHEDULE_BUFFERS:
            schedule[name] = t
        elif report and not name.startswith(REPORT_PREFIX):
            raise ConversionError(f"unexpected tensor {name} in a report checkpoint (only "
                                  f"{REPORT_PREFIX}*, beta_t and alpha_t)")
        else:
            decoder[name[len(REPORT_PREFIX):] if report else name] = t
    if schedule and len(schedule) != 2:
        missing = [n for n in SCHEDULE_BUFFERS if n not in schedule]
        raise ConversionError(f"the checkpoint has {', '.join(schedule)} but not {missing[0]}")
    return decoder, schedule or None


def check_frequencies(t, cfg):
    """A CNN's frequencies buffer must hold the report's values (to 1e-6)."""
    values = [float(v) for v in t.detach().cpu().double().reshape(-1).tolist()]
    want = cnn_frequencies(cfg["time_freqs"])
    if len(values) != len(want):
        raise ConversionError(f"frequencies has {len(values)} values, but time_embed.0 "
                              f"takes {2 * len(want)} inputs ({len(want)} frequencies)")
    for j, (got, ref) in enumerate(zip(values, want)):
        if abs(got - ref) > 1e-6 * max(abs(ref), 1.0):
            formula = "0" if j == 0 else f"2*pi*1.5^{j - 1} = {ref!r}"
            raise ConversionError(f"frequencies[{j}] = {got!r}, but the report's CNN has {formula}: "
                                  "not the report's time encoding")


def float32_values(name, t):
    """The values of a tensor as array('f'), refusing non-float data."""
    torch = _torch()
    if not t.is_floating_point():
        raise ConversionError(f"tensor {name} has dtype {t.dtype}, not a float type")
    if t.dtype != torch.float32:
        print(f"{PROG}: note: {name} is {t.dtype}; storing it as float32", file=sys.stderr)
    t = t.detach().cpu().to(torch.float32).contiguous().reshape(-1)
    try:
        return array.array("f", t.numpy().tobytes())
    except (RuntimeError, TypeError):   # no numpy: slower but fine
        return array.array("f", t.tolist())


def schedule_entries(schedule):
    beta, alpha = schedule["beta_t"], schedule["alpha_t"]
    if beta.dim() != 1 or alpha.shape != beta.shape or beta.numel() < 2:
        raise ConversionError(f"beta_t {tuple(beta.shape)} and alpha_t {tuple(alpha.shape)} "
                              "must both have shape (T+1,) with T >= 1")
    return {"schedule.beta": float32_values("beta_t", beta),
            "schedule.alpha_bar": float32_values("alpha_t", alpha),
            "schedule.T": beta.numel() - 1}


def degradation_entries(schedule_conf, degradation="auto", kernel_size=11):
    """The degradation.* keys that make a converted report checkpoint an
    inference model, with the T its decoder goes with."""
    beta = schedule_conf["schedule.beta"]
    if degradation == "auto":
        degradation = "blur" if any(b >= 1.0 for b in beta[1:]) else "noise"
    conf = {"degradation.kind": degradation, "decoder.T": schedule_conf["schedule.T"],
            "model.kind": "inference"}
    if degradation == "blur":
        if kernel_size < 1 or kernel_size > 63 or kernel_size % 2 == 0:
            raise ConversionError(f"--kernel-size {kernel_size}: an odd size in 1..63")
        conf.update({"degradation.kernel_size": int(kernel_size), "degradation.padding": 0})
    return conf


def config_entries(kind, cfg):
    """All decoder.* keys, for both types, as cd_decoder_save writes them."""
    full = dict(CNN_DEFAULTS)
    full.update(UNET_DEFAULTS)
    full.update(cfg)
    conf = {"decoder.type": kind}
    conf.update({f"decoder.{k}": int(full[k]) for k in SCALAR_KEYS})
    conf.update({f"decoder.{k}": array.array("q", full[k]) for k in LIST_KEYS})
    if full.get("classes", 0) > 0:  # written only then, as the library does
        conf["decoder.classes"] = int(full["classes"])
    return conf


def state_dict_to_checkpoint(sd, forced_type=None, heads=None, head_dim=None,
                             degradation="auto", kernel_size=11):
    """A cdm_format.Checkpoint from a decoder or report state_dict."""
    decoder, schedule = split_checkpoint(sd)
    freqs = decoder.pop("frequencies", None)
    shapes = {name: tuple(t.shape) for name, t in decoder.items()}
    kind = detect_type(shapes, forced_type)
    if kind == "cnn":
        if heads is not None or head_dim is not None:
            raise ConversionError("--heads and --head-dim apply to a UNet only")
        cfg = infer_cnn_config(shapes)
    else:
        if freqs is not None:
            raise ConversionError("a UNet has no frequencies buffer")
        cfg = infer_unet_config(shapes, heads, head_dim)
    check_shapes(kind, cfg, shapes)
    if freqs is not None:
        check_frequencies(freqs, cfg)
    ckpt = cdm_format.Checkpoint(conf=config_entries(kind, cfg))
    if schedule:
        ckpt.conf.update(schedule_entries(schedule))
        ckpt.conf.update(degradation_entries(ckpt.conf, degradation, kernel_size))
    for name, shape in expected_shapes(kind, cfg):
        ckpt.add_tensor(name, shape, float32_values(name, decoder[name]))
    return ckpt, kind, cfg


# ---------------------------------------------------------------- to-pt

def config_from_checkpoint(ckpt):
    conf = ckpt.conf
    kind = conf.get("decoder.type")
    if kind not in ("cnn", "unet"):
        raise ConversionError(f"decoder.type is {kind!r}; expected 'cnn' or 'unet' "
                              "(is this a decoder checkpoint?)")
    cfg = {}
    for key in SCALAR_KEYS + LIST_KEYS:
        value = conf.get(f"decoder.{key}")
        wanted = array.array if key in LIST_KEYS else int
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise ConversionError(f"missing or mistyped CONF entry decoder.{key}")
        cfg[key] = tuple(value) if key in LIST_KEYS else value
    classes = conf.get("decoder.classes", 0)
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
        raise ConversionError("mistyped CONF entry decoder.classes")
    cfg["classes"] = classes
    return kind, cfg


def checkpoint_to_state_dict(ckpt, report=False):
    """A state_dict (OrderedDict of float32 tensors) from a Checkpoint."""
    torch = _torch()
    from collections import OrderedDict
    kind, cfg = config_from_checkpoint(ckpt)
    check_shapes(kind, cfg, {n: t.shape for n, t in ckpt.tensors.items()})
    # PyTorch lists a module's own buffers before its children's tensors.
    sd = OrderedDict()
    if kind == "cnn":
        sd["frequencies"] = _tensor(torch, cnn_frequencies(cfg["time_freqs"]),
                                    (cfg["time_freqs"],))
    for name, (shape, data) in ckpt.tensors.items():
        sd[name] = _tensor(torch, data, shape)
    if not report:
        return sd
    out = OrderedDict()
    for buf, key in (("beta_t", "schedule.beta"), ("alpha_t", "schedule.alpha_bar")):
        values = ckpt.conf.get(key)
        if not isinstance(values, array.array) or values.typecode != "f":
            raise ConversionError(f"--report needs the schedule, but the checkpoint has no "
                                  f"float32 array {key}")
        out[buf] = _tensor(torch, values, (len(values),))
    out.update((REPORT_PREFIX + name, t) for name, t in sd.items())
    return out


def _tensor(torch, data, shape):
    return torch.frombuffer(bytearray(data.tobytes()), dtype=torch.float32).reshape(shape)


# ---------------------------------------------------------------- command line

def to_cdm(args):
    sd = load_state_dict(args.input)
    ckpt, kind, cfg = state_dict_to_checkpoint(sd, args.type, args.heads, args.head_dim,
                                               args.degradation, args.kernel_size)
    cdm_format.write(ckpt, args.output)
    n = sum(len(t.data) for t in ckpt.tensors.values())
    sched = (f", {ckpt.conf['degradation.kind']} degradation, schedule T = "
             f"{ckpt.conf['schedule.T']}: an inference model" if "schedule.T" in ckpt.conf
             else ": decoder only (no schedule in the input; sampling needs one)")
    print(f"{args.output}: {kind} {cfg}, {len(ckpt.tensors)} tensors, {n} parameters{sched}")


def to_pt(args):
    torch = _torch()
    try:
        ckpt = cdm_format.read(args.input)
    except FileNotFoundError:
        raise ConversionError(f"{args.input}: no such file")
    sd = checkpoint_to_state_dict(ckpt, args.report)
    tmp = args.output + ".tmp"
    try:
        torch.save(sd, tmp)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"{args.output}: {len(sd)} tensors")


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description="Convert the report's decoders "
                                "between PyTorch state_dicts and libcolddiff checkpoints.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("to-cdm", help="PyTorch state_dict -> libcolddiff checkpoint")
    a.add_argument("input", metavar="IN.pt")
    a.add_argument("output", metavar="OUT.cdm")
    a.add_argument("--type", choices=("cnn", "unet"),
                   help="the decoder type (inferred from the tensor names otherwise)")
    a.add_argument("--heads", type=int, help="UNet attention heads (default 4)")
    a.add_argument("--head-dim", type=int, help="UNet attention head width")
    a.add_argument("--degradation", choices=("auto", "noise", "blur"), default="auto",
                   help="what a report checkpoint's schedule drives (auto: blur when a "
                        "beta_t is 1, noise otherwise)")
    a.add_argument("--kernel-size", type=int, default=11,
                   help="the blur's kernel size (the report's 11)")
    a.set_defaults(run=to_cdm)
    b = sub.add_parser("to-pt", help="libcolddiff checkpoint -> PyTorch state_dict")
    b.add_argument("input", metavar="IN.cdm")
    b.add_argument("output", metavar="OUT.pt")
    b.add_argument("--report", action="store_true",
                   help="write a report checkpoint: prefix decoder., add beta_t and alpha_t")
    b.set_defaults(run=to_pt)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        args.run(args)
    except (ConversionError, cdm_format.CheckpointError, OSError) as e:
        message = str(e) if not isinstance(e, OSError) or not e.filename \
            else f"{e.filename}: {e.strerror}"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
