"""The PyTorch converter (examples/python/convert_torch.py) and its file
format module (cdm_format.py):
  - state_dict -> .cdm -> state_dict gives identical tensors, for both
    decoders, plain and as report checkpoints with schedule buffers;
  - the configuration inferred from shapes, and clear one-line errors;
  - the converted .cdm loads in libcolddiff (ctypes, COLDDIFF_LIBRARY) and its
    forward pass matches PyTorch's at float32 tolerance, and a file the
    library saves reads back in Python.

Needs PyTorch: run with /usr/bin/python3 (Debian's python3-torch). Without
torch it prints why and exits with 77, which CTest counts as skipped.
"""
import array
import contextlib
import ctypes
import io
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import torch
except ImportError as e:
    print(f"test_convert.py: skipped: PyTorch is not importable ({e}); run it with an "
          "interpreter that has torch, e.g. /usr/bin/python3")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONVERTER = os.path.join(ROOT, "examples", "python", "convert_torch.py")
sys.path.insert(0, os.path.join(ROOT, "examples", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import cdm_format  # noqa: E402
import convert_torch  # noqa: E402
import torch_models as tm  # noqa: E402

LIB_PATH = os.environ.get("COLDDIFF_LIBRARY", "libcolddiff.so.0")

SMALL_UNET = tm.unet_config(dim=8, dim_mults=(1, 2, 4), heads=2, head_dim=8)
ODD_UNET = tm.unet_config(channels=2, dim=6, dim_mults=(1, 2, 2), heads=3, head_dim=4,
                          convnext_mult=1)
ODD_CNN = tm.cnn_config(channels=2, height=20, width=12, hidden=(8, 16, 8), kernel=5,
                        time_freqs=12, time_hidden=64, time_layers=2)


def random_model(kind, cfg=None, seed=0):
    """A decoder with every parameter random (LayerNorm affines included)."""
    torch.manual_seed(seed)
    model = tm.make_decoder(kind, cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def report_checkpoint(model, T=200):
    """What the report saved: beta_t and alpha_t (report-style: beta_0 = c,
    alpha = exp(cumsum(log(1 - beta)))), then the decoder under decoder.*
    (a module's own buffers come before its children's in a state_dict)."""
    beta = torch.full((T + 1,), 0.1)
    sd = {"beta_t": beta, "alpha_t": torch.exp(torch.cumsum(torch.log(1 - beta), 0))}
    sd.update(("decoder." + k, v) for k, v in model.state_dict().items())
    return sd


class ConverterCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="colddiff-convert-")
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_converter(self, *args, ok=True):
        """Run the command line (in this process: importing torch again for
        each run would take seconds); return its stderr. ok=False expects the
        failure form: status 1 and exactly one line on stderr."""
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = convert_torch.main(list(args))
        return self.check_outcome(status, err.getvalue(), ok)

    def check_outcome(self, status, stderr, ok):
        if ok:
            self.assertEqual(status, 0, stderr)
        else:
            self.assertEqual(status, 1, stderr)
            lines = stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, stderr)
            self.assertTrue(lines[0].startswith("convert_torch.py: error: "), lines[0])
        return stderr

    def to_cdm(self, state_dict, *flags, name="model"):
        pt, cdm = self.path(name + ".pt"), self.path(name + ".cdm")
        torch.save(state_dict, pt)
        self.run_converter("to-cdm", pt, cdm, *flags)
        return cdm

    def to_pt(self, cdm, *flags):
        pt = self.path("back.pt")
        self.run_converter("to-pt", cdm, pt, *flags)
        return torch.load(pt)

    def assert_same_state_dict(self, got, want):
        self.assertEqual(list(got), list(want))
        for name, t in want.items():
            self.assertEqual(got[name].dtype, torch.float32, name)
            self.assertEqual(got[name].shape, t.shape, name)
            self.assertTrue(torch.equal(got[name], t), name)

    def expect_error(self, state_dict, needle, *flags):
        pt = self.path("bad.pt")
        torch.save(state_dict, pt)
        err = self.run_converter("to-cdm", pt, self.path("bad.cdm"), *flags, ok=False)
        self.assertIn(needle, err)
        self.assertFalse(os.path.exists(self.path("bad.cdm")))


class RoundTrip(ConverterCase):
    def test_command_line(self):
        """The script itself, as a user runs it: status 0 and a summary, or
        status 1 and one error line."""
        pt, cdm = self.path("cnn.pt"), self.path("cnn.cdm")
        torch.save(random_model("cnn").state_dict(), pt)
        for args, ok in ((["to-cdm", pt, cdm], True), (["to-pt", cdm, self.path("b.pt")], True),
                         (["to-cdm", pt, cdm, "--type", "unet"], False)):
            p = subprocess.run([sys.executable, CONVERTER, *args], capture_output=True,
                               text=True)
            self.check_outcome(p.returncode, p.stderr, ok)
            if ok:
                self.assertIn(args[2], p.stdout)
        self.assertEqual(set(torch.load(self.path("b.pt"))), set(torch.load(pt)))

    def test_cnn_state_dict(self):
        sd = random_model("cnn").state_dict()
        self.assert_same_state_dict(self.to_pt(self.to_cdm(sd)), sd)

    def test_unet_state_dict(self):
        sd = random_model("unet").state_dict()   # the report's 3,733,172 parameters
        cdm = self.to_cdm(sd)
        self.assertEqual(cdm_format.read(cdm).conf["decoder.type"], "unet")
        self.assert_same_state_dict(self.to_pt(cdm), sd)

    def test_non_default_configurations(self):
        for kind, cfg, flags in (("cnn", ODD_CNN, ()), ("unet", ODD_UNET, ("--heads", "3")),
                                 ("unet", SMALL_UNET, ("--head-dim", "8")),
                                 ("cnn", dict(ODD_CNN, classes=3), ()),
                                 ("unet", dict(SMALL_UNET, classes=10), ("--head-dim", "8"))):
            with self.subTest(kind=kind, cfg=cfg):
                sd = random_model(kind, cfg).state_dict()
                cdm = self.to_cdm(sd, *flags)
                conf = cdm_format.read(cdm).conf
                for key, value in cfg.items():
                    # decoder.classes is written only for a class table.
                    got = conf.get("decoder." + key, 0) if key == "classes" else \
                        conf["decoder." + key]
                    self.assertEqual(tuple(got) if isinstance(value, tuple) else got, value, key)
                self.assert_same_state_dict(self.to_pt(cdm), sd)

    def test_report_checkpoint(self):
        for kind in ("cnn", "unet"):
            with self.subTest(kind=kind):
                sd = report_checkpoint(random_model(kind, SMALL_UNET if kind == "unet" else None))
                cdm = self.to_cdm(sd)
                conf = cdm_format.read(cdm).conf
                self.assertEqual(conf["schedule.T"], 200)
                # An inference model: the degradation the schedule drives.
                self.assertEqual(conf["degradation.kind"], "noise")
                self.assertEqual(conf["decoder.T"], 200)
                self.assertEqual(conf["model.kind"], "inference")
                for key, buf in (("schedule.beta", "beta_t"), ("schedule.alpha_bar", "alpha_t")):
                    self.assertEqual(conf[key].typecode, "f")
                    self.assertEqual(conf[key].tobytes(), sd[buf].numpy().tobytes(), key)
                self.assert_same_state_dict(self.to_pt(cdm, "--report"), sd)
                # Without --report: the plain decoder state_dict.
                self.assert_same_state_dict(
                    self.to_pt(cdm), {k[len("decoder."):]: v for k, v in sd.items()
                                      if k.startswith("decoder.")})

    def test_blur_report_checkpoint(self):
        sd = report_checkpoint(random_model("cnn", None))
        sd["beta_t"] = torch.ones(201)
        conf = cdm_format.read(self.to_cdm(sd)).conf
        self.assertEqual(conf["degradation.kind"], "blur")
        self.assertEqual(conf["degradation.kernel_size"], 11)
        conf = cdm_format.read(self.to_cdm(sd, "--degradation", "noise")).conf
        self.assertEqual(conf["degradation.kind"], "noise")

    def test_plain_state_dict_is_decoder_only(self):
        conf = cdm_format.read(self.to_cdm(random_model("cnn", None).state_dict())).conf
        self.assertNotIn("degradation.kind", conf)

    def test_shapes_table_matches_pytorch(self):
        for kind, cfg in (("cnn", None), ("cnn", ODD_CNN), ("unet", None), ("unet", ODD_UNET),
                          ("unet", tm.unet_config(dim_mults=(1, 2, 4, 8)))):
            model = tm.make_decoder(kind, cfg)
            want = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
            self.assertEqual(convert_torch.expected_shapes(kind, model.cfg), want)
            shapes = {n: s for n, s in want}
            inferred = (convert_torch.infer_cnn_config(shapes) if kind == "cnn" else
                        convert_torch.infer_unet_config(shapes, heads=model.cfg["heads"]))
            self.assertEqual({k: inferred[k] for k in model.cfg}, model.cfg)


class Errors(ConverterCase):
    def test_bad_frequencies(self):
        sd = report_checkpoint(random_model("cnn"))
        sd["decoder.frequencies"] = sd["decoder.frequencies"] * 1.001
        self.expect_error(sd, "frequencies[1]")
        sd["decoder.frequencies"] = torch.arange(16.0)
        self.expect_error(sd, "frequencies[")
        sd["decoder.frequencies"] = tm.cnn_frequencies(12)
        self.expect_error(sd, "frequencies has 12 values")

    def test_missing_extra_and_misshaped_tensors(self):
        sd = random_model("cnn").state_dict()
        bad = dict(sd)
        del bad["blocks.2.net.1.bias"]
        self.expect_error(bad, "missing tensor blocks.2.net.1.bias")
        bad = dict(sd, **{"blocks.9.extra": torch.zeros(3)})
        self.expect_error(bad, "unexpected tensor blocks.9.extra")
        bad = dict(sd, **{"blocks.1.net.1.weight": torch.zeros(32, 28, 27)})
        self.expect_error(bad, "blocks.1.net.1.weight has shape (32, 28, 27)")
        bad = dict(report_checkpoint(random_model("cnn")), step=torch.zeros(1))
        self.expect_error(bad, "unexpected tensor step")
        bad = report_checkpoint(random_model("cnn"))
        del bad["alpha_t"]
        self.expect_error(bad, "but not alpha_t")

    def test_type_and_heads(self):
        sd = random_model("unet", SMALL_UNET).state_dict()
        self.expect_error(sd, "--type cnn, but the tensors are those of a unet", "--type", "cnn")
        self.expect_error(sd, "--heads 3 x --head-dim 8", "--heads", "3", "--head-dim", "8")
        self.expect_error({"weight": torch.zeros(3)}, "cannot tell the decoder type")
        self.expect_error(random_model("cnn").state_dict(), "apply to a UNet only",
                          "--heads", "2")
        # 16 = 2 heads of 8 would also be 4 heads of 4: --heads picks.
        cdm = self.to_cdm(sd, "--heads", "2")
        self.assertEqual(cdm_format.read(cdm).conf["decoder.head_dim"], 8)

    def test_not_a_state_dict_or_checkpoint(self):
        pt = self.path("list.pt")
        torch.save([torch.zeros(2)], pt)
        err = self.run_converter("to-cdm", pt, self.path("x.cdm"), ok=False)
        self.assertIn("not a state_dict", err)
        with open(self.path("junk.pt"), "wb") as f:
            f.write(b"not a torch file")
        self.run_converter("to-cdm", self.path("junk.pt"), self.path("x.cdm"), ok=False)
        err = self.run_converter("to-pt", self.path("missing.cdm"), self.path("x.pt"), ok=False)
        self.assertIn("no such file", err)
        cdm = self.to_cdm(random_model("cnn").state_dict())
        with open(cdm, "rb") as f:
            raw = bytearray(f.read())
        raw[len(raw) // 2] ^= 0x10
        with open(cdm, "wb") as f:
            f.write(raw)
        err = self.run_converter("to-pt", cdm, self.path("x.pt"), ok=False)
        self.assertIn("checksum", err)


class Format(ConverterCase):
    def test_every_entry_type_round_trips(self):
        ck = cdm_format.Checkpoint(conf={"i": -(1 << 62), "f": 0.1, "s": "tau ✓", "empty": "",
                                         "fa": array.array("f", [1.5, -2.0]),
                                         "ia": array.array("q", [3, -4]),
                                         "none": array.array("f")},
                                   meta={"note": "hello"})
        ck.add_tensor("a.weight", (2, 3), range(6))
        path = self.path("all.cdm")
        cdm_format.write(ck, path)
        back = cdm_format.read(path)
        self.assertEqual(back.conf, ck.conf)
        self.assertEqual(back.meta, ck.meta)
        self.assertEqual(back.tensors, ck.tensors)

    def test_corruption_is_detected(self):
        ck = cdm_format.Checkpoint()
        ck.add_tensor("w", (4,), [1, 2, 3, 4])
        raw = cdm_format.encode(ck)
        cases = [(raw[:30], "format", "truncated header"),
                 (b"PK" + raw[2:], "format", "bad magic"),
                 (raw + b"x", "format", "compressed bytes"),
                 (raw[:12] + b"\x02" + raw[13:], "version", "newer"),
                 (raw[:-1] + bytes([raw[-1] ^ 1]), "checksum", "compressed body"),
                 (raw[:44] + bytes([raw[44] ^ 1]) + raw[45:], "checksum", "header")]
        for data, kind, needle in cases:
            with self.subTest(needle=needle):
                with self.assertRaises(cdm_format.CheckpointError) as cm:
                    cdm_format.decode(data)
                self.assertEqual(cm.exception.kind, kind)
                self.assertIn(needle, str(cm.exception))


# ---------------------------------------------------------------- through C

def load_library():
    lib = ctypes.CDLL(LIB_PATH)
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    pp, fp = ctypes.POINTER(p), ctypes.POINTER(ctypes.c_float)
    sigs = {
        "cd_last_error": (ctypes.c_char_p, []),
        "cd_tensor_create": (ctypes.c_int, [pp, i64, ctypes.POINTER(i64)]),
        "cd_tensor_free": (None, [p]),
        "cd_tensor_copy_from": (ctypes.c_int, [p, fp, i64]),
        "cd_tensor_copy_to": (ctypes.c_int, [p, fp, i64]),
        "cd_decoder_load": (ctypes.c_int, [pp, ctypes.c_char_p]),
        "cd_model_load": (ctypes.c_int, [ctypes.c_char_p, pp, pp]),
        "cd_degradation_free": (None, [p]),
        "cd_degradation_T": (i64, [p]),
        "cd_degradation_copy_schedule": (ctypes.c_int, [p, fp, fp, i64]),
        "cd_decoder_save": (ctypes.c_int, [p, ctypes.c_char_p]),
        "cd_decoder_free": (None, [p]),
        "cd_decoder_get_kind": (ctypes.c_int, [p]),
        "cd_decoder_param_count": (i64, [p]),
        "cd_decoder_params": (p, [p]),
        "cd_decoder_forward": (ctypes.c_int, [p, p, p, p]),
        "cd_params_find": (ctypes.c_int, [p, ctypes.c_char_p, ctypes.POINTER(i64)]),
        "cd_params_data": (fp, [p, i64]),
        "cd_params_numel_at": (i64, [p, i64]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class Tensor:
    """A cd_tensor holding a torch tensor's float32 values."""

    def __init__(self, lib, values):
        self.lib, self.shape = lib, tuple(values.shape)
        self.ptr = ctypes.c_void_p()
        dims = (ctypes.c_int64 * len(self.shape))(*self.shape)
        assert lib.cd_tensor_create(ctypes.byref(self.ptr), len(self.shape), dims) == 0
        flat = (ctypes.c_float * values.numel())(*values.reshape(-1).tolist())
        assert lib.cd_tensor_copy_from(self.ptr, flat, values.numel()) == 0

    def values(self):
        n = 1
        for d in self.shape:
            n *= d
        buf = (ctypes.c_float * n)()
        assert self.lib.cd_tensor_copy_to(self.ptr, buf, n) == 0
        return torch.tensor(list(buf), dtype=torch.float32).reshape(self.shape)

    def free(self):
        self.lib.cd_tensor_free(self.ptr)


class ThroughLibrary(ConverterCase):
    @classmethod
    def setUpClass(cls):
        cls.lib = load_library()

    def load(self, cdm):
        d = ctypes.c_void_p()
        st = self.lib.cd_decoder_load(ctypes.byref(d), cdm.encode())
        self.assertEqual(st, 0, self.lib.cd_last_error().decode())
        self.addCleanup(self.lib.cd_decoder_free, d)
        return d

    def c_forward(self, d, z, tau):
        zt, tt, ot = (Tensor(self.lib, t) for t in (z, tau, torch.zeros_like(z)))
        try:
            st = self.lib.cd_decoder_forward(d, zt.ptr, tt.ptr, ot.ptr)
            self.assertEqual(st, 0, self.lib.cd_last_error().decode())
            return ot.values()
        finally:
            for t in (zt, tt, ot):
                t.free()

    def check_forward(self, kind, cfg, hw, report=False, flags=()):
        """Convert a random PyTorch model, load it in C, run both on the same
        input, and compare with PyTorch's float64 evaluation of the float32
        weights (tolerance as tests/check_decoder_parity.c: 2e-5 of the
        largest output plus 1e-5 relative)."""
        model = random_model(kind, cfg, seed=3)
        sd = report_checkpoint(model) if report else model.state_dict()
        d = self.load(self.to_cdm(sd, *flags))
        self.assertEqual(self.lib.cd_decoder_get_kind(d), 0 if kind == "cnn" else 1)
        self.assertEqual(self.lib.cd_decoder_param_count(d), tm.param_count(model))
        self.check_weights(d, model)
        torch.manual_seed(4)
        z = torch.randn(2, model.cfg["channels"], *hw)
        tau = torch.tensor([0.001, 1.0])
        with torch.no_grad():
            want = model.double()(z.double(), tau).float()
        got = self.c_forward(d, z, tau)
        err = (got - want).abs()
        scale = want.abs().max().item()
        print(f"\n  C vs PyTorch, {kind} {hw[0]}x{hw[1]}: max abs {err.max().item():.2e} "
              f"(max |out| {scale:.2e})", file=sys.stderr)
        self.assertTrue(bool((err <= 2e-5 * scale + 1e-5 * want.abs()).all()),
                        f"max abs error {err.max().item():.3e}")

    def check_weights(self, d, model):
        params = self.lib.cd_decoder_params(d)
        for name, p in model.named_parameters():
            idx = ctypes.c_int64(-1)
            self.assertEqual(self.lib.cd_params_find(params, name.encode(), ctypes.byref(idx)),
                             0, name)
            n = self.lib.cd_params_numel_at(params, idx)
            self.assertEqual(n, p.numel(), name)
            data = self.lib.cd_params_data(params, idx)
            got = array.array("f", ctypes.string_at(data, 4 * n))
            self.assertEqual(got.tobytes(), p.detach().numpy().tobytes(), name)

    def test_report_cnn(self):
        self.check_forward("cnn", None, (28, 28))

    def test_report_unet(self):
        self.check_forward("unet", None, (28, 28))

    def test_report_checkpoints_load(self):
        self.check_forward("cnn", ODD_CNN, (20, 12), report=True)
        self.check_forward("unet", ODD_UNET, (16, 8), report=True, flags=("--heads", "3"))

    def test_report_checkpoint_is_an_inference_model(self):
        sd = report_checkpoint(random_model("cnn", None))
        cdm = self.to_cdm(sd)
        d, g = ctypes.c_void_p(), ctypes.c_void_p()
        st = self.lib.cd_model_load(cdm.encode(), ctypes.byref(d), ctypes.byref(g))
        self.assertEqual(st, 0, self.lib.cd_last_error().decode())
        self.addCleanup(self.lib.cd_decoder_free, d)
        self.addCleanup(self.lib.cd_degradation_free, g)
        self.assertEqual(self.lib.cd_degradation_T(g), 200)
        beta, abar = (ctypes.c_float * 201)(), (ctypes.c_float * 201)()
        self.assertEqual(self.lib.cd_degradation_copy_schedule(g, beta, abar, 201), 0)
        self.assertEqual(bytes(beta), sd["beta_t"].numpy().tobytes())
        self.assertEqual(bytes(abar), sd["alpha_t"].numpy().tobytes())
        # The command line takes it as it is (when the test is given one).
        cli = os.environ.get("COLDDIFF_CLI")
        if not cli:
            return
        data = os.path.join(ROOT, "tests", "data")
        runs = (["info", cdm],
                ["sample", "--checkpoint", cdm, "--n", "2", "--out", self.path("s.png")],
                ["restore", "--checkpoint", cdm, "--data", data, "--n", "1", "--out",
                 self.path("r.png")],
                ["eval", "--checkpoint", cdm, "--data", data, "--n", "2", "--fd-samples", "2",
                 "--sampler", "ddim", "--steps", "5"])
        for args in runs:
            p = subprocess.run([cli, *args], capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, f"colddiff {args[0]}: {p.stderr}")
            if args[0] == "info":
                self.assertIn("kind: inference model", p.stdout)
                self.assertIn("T = 200", p.stdout)

    def test_decoder_only_and_pytorch_files_are_named(self):
        cdm = self.to_cdm(random_model("cnn", None).state_dict())
        d, g = ctypes.c_void_p(), ctypes.c_void_p()
        self.assertNotEqual(self.lib.cd_model_load(cdm.encode(), ctypes.byref(d),
                                                   ctypes.byref(g)), 0)
        self.assertIn("decoder only", self.lib.cd_last_error().decode())
        pt = self.path("model.pt")  # written by to_cdm: a torch.save zip
        self.assertNotEqual(self.lib.cd_decoder_load(ctypes.byref(d), pt.encode()), 0)
        self.assertIn("convert_torch.py", self.lib.cd_last_error().decode())

    def test_library_checkpoint_reads_in_python(self):
        model = random_model("unet", SMALL_UNET)
        d = self.load(self.to_cdm(model.state_dict()))
        saved = self.path("saved.cdm")
        self.assertEqual(self.lib.cd_decoder_save(d, saved.encode()), 0)
        back = self.to_pt(saved)
        self.assert_same_state_dict(back, model.state_dict())


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False).result.wasSuccessful() else 1)
