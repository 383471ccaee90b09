"""Tests of the ctypes binding examples/python/colddiff.py (unittest).

Every class, bad use (wrong types, bad shapes, use after close, a missing or
mismatched library: none may crash the interpreter), lifetimes, a tiny train /
save / load / sample round trip on the MNIST slice in tests/data, and numpy
interop when numpy imports.

    COLDDIFF_LIBRARY=build/lib/libcolddiff.so python3 tests/python/test_binding.py

Options (CTest uses them to report the numpy part separately):
    --no-numpy   leave out the numpy tests
    --numpy      run only the numpy tests; exit 77 (CTest: skipped) when numpy
                 is not importable
Without an option everything runs, and the numpy tests are reported as
skipped (unittest skip) when numpy is missing.
"""
import array
import ctypes
import enum
import gc
import math
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "data")
IMAGES = os.path.join(DATA, "t10k-images-idx3-ubyte.gz")
LABELS = os.path.join(DATA, "t10k-labels-idx1-ubyte.gz")
HEADER = os.path.join(ROOT, "include", "colddiff.h")
HEADERS = (HEADER, os.path.join(ROOT, "include", "colddiff_experimental.h"))
MODULE_DIR = os.path.join(ROOT, "examples", "python")
sys.path.insert(0, MODULE_DIR)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import c_header  # noqa: E402
import colddiff as cd  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None

TINY_CNN = dict(hidden=(4, 4), kernel=3, time_freqs=4, time_hidden=16, time_layers=1)


def tiny_decoder(rng, **extra):
    keys = dict(TINY_CNN)
    keys.update(extra)
    return cd.Decoder("cnn", rng, **keys)


def slice_dataset(val=0.1, seed=1):
    ds = cd.Dataset.load_idx(IMAGES, LABELS)
    ds.split(val, seed)
    return ds


def read_headers():
    texts = []
    for path in HEADERS:
        with open(path) as f:
            texts.append(f.read())
    return c_header.Header(texts)


def run_python(code, **env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=e, timeout=120, cwd=tempfile.gettempdir())


PRELUDE = f"import sys; sys.path.insert(0, {MODULE_DIR!r}); "


class TempDirCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="cd-py-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)


# --------------------------------------------------------------------------

class Loading(unittest.TestCase):
    def test_version_and_abi(self):
        self.assertRegex(cd.version(), r"^\d+\.\d+\.\d+$")
        self.assertEqual(cd.abi_version(), cd.ABI_VERSION)
        self.assertTrue(os.path.exists(cd.library_path()) or "/" not in cd.library_path())

    def test_every_header_function_is_bound(self):
        names = set(read_headers().functions)
        self.assertGreater(len(names), 150)
        self.assertIn("cd_decoder_workspace_size", names)  # colddiff_experimental.h
        missing = sorted(names - set(cd._SIGNATURES))
        self.assertEqual(missing, [], "functions of the headers without a binding")
        unexported = sorted(n for n in names if not cd.has_function(n))
        self.assertEqual(unexported, [], "declared in the headers but not exported")

    def test_enums_match_the_header(self):
        """Every enum class has exactly the members and values of its C enum
        (the C *_INVALID = -1 error values excepted: the binding raises
        instead), experimental keys included."""
        h = read_headers()
        pairs = {cd.Status: ("cd_status", ("CD_ERR_", "CD_")),
                 cd.Split: ("cd_split", ("CD_SPLIT_",)),
                 cd.Prediction: ("cd_prediction", ("CD_PREDICT_",)),
                 cd.WeightFormat: ("cd_weight_format", ("CD_WEIGHTS_",)),
                 cd.DecoderKind: ("cd_decoder_kind", ("CD_DECODER_",)),
                 cd.DecoderOption: ("cd_decoder_option", ("CD_DECODER_OPT_",)),
                 cd.ScheduleKind: ("cd_schedule_kind", ("CD_SCHEDULE_",)),
                 cd.DegradationKind: ("cd_degradation_kind", ("CD_DEGRADATION_",)),
                 cd.Padding: ("cd_padding", ("CD_PADDING_",)),
                 cd.Target: ("cd_target", ("CD_TARGET_",)),
                 cd.Loss: ("cd_loss", ("CD_LOSS_",)),
                 cd.ReduceOp: ("cd_reduce_op", ("CD_REDUCE_",)),
                 cd.TrainerOption: ("cd_trainer_option", ("CD_TRAINER_OPT_",)),
                 cd.ProgressKey: ("cd_progress_key", ("CD_PROGRESS_",)),
                 cd.SamplerKind: ("cd_sampler_kind", ("CD_SAMPLER_",)),
                 cd.SamplerOption: ("cd_sampler_option", ("CD_SAMPLER_OPT_",)),
                 cd.ClassifierOption: ("cd_classifier_option", ("CD_CLASSIFIER_OPT_",)),
                 cd.OptionType: ("cd_option_type", ("CD_OPTION_",)),
                 cd.PixelMap: ("cd_pixel_map", ("CD_PIXELS_",)),
                 cd.Reduction: ("cd_metric_reduction", ("CD_REDUCTION_",)),
                 cd.NamedEnum: ("cd_enum", ("CD_ENUM_",))}
        python_enums = {v for v in vars(cd).values()
                        if isinstance(v, type) and issubclass(v, enum.IntEnum)}
        self.assertEqual(python_enums - set(pairs), set(), "enum classes this test does not know")
        self.assertEqual(set(h.enums) - {c for c, _ in pairs.values()}, set(),
                         "enums of the headers without a Python class")
        # Experimental keys are typed macros outside their enum's body; each
        # belongs to the class of its prefix and is of that class's C type.
        experimental = {cd.TrainerOption: "CD_TRAINER_OPT_"}
        self.assertEqual(set(h.typed_macros.values()), {"cd_trainer_option"})
        claimed = {m for m in h.anonymous if any(m.startswith(p) for p in experimental.values())}
        self.assertEqual(set(h.anonymous) - claimed, set(),
                         "experimental enum values without a Python class")
        self.assertEqual(h.macros["CD_OPTION_EXPERIMENTAL_FIRST"], cd.OPTION_EXPERIMENTAL_FIRST)
        invalid_seen = set()
        for cls, (c_name, prefixes) in pairs.items():
            def strip(m):
                return next(m[len(p):] for p in prefixes if m.startswith(p))
            members = dict(h.enums[c_name])
            if cls in experimental:
                members.update((m, v) for m, v in h.anonymous.items()
                               if m.startswith(experimental[cls]))
            want = {}
            for m, v in members.items():
                if m.endswith("_INVALID"):
                    self.assertEqual(v, -1, m)
                    invalid_seen.add(cls)
                    continue
                want[strip(m)] = v
            got = {m.name: m.value for m in cls}
            self.assertEqual(got, want, f"{cls.__name__} against {c_name}")
        self.assertEqual(invalid_seen, {cd.Prediction, cd.DecoderKind, cd.ScheduleKind,
                                        cd.DegradationKind, cd.Target, cd.SamplerKind})
        self.assertEqual([m for m in cd.TrainerOption if m >= cd.OPTION_EXPERIMENTAL_FIRST],
                         [cd.TrainerOption.LR_DECAY])

    def test_enum_names_come_from_the_library(self):
        self.assertEqual(set(cd.NAMED_ENUMS.values()), set(cd.NamedEnum))
        self.assertEqual(cd._L().cd_enum_count(len(cd.NamedEnum)), -1)  # nothing unbound
        for cls, kind in cd.NAMED_ENUMS.items():
            self.assertEqual(cd._L().cd_enum_count(int(kind)), len(cls), cls.__name__)
            for m in cls:
                name = cd.enum_name(m)
                # The library's spelling is the member's name in lower case.
                self.assertEqual(name.upper().replace("-", "_"), m.name, cls.__name__)
                self.assertIs(cd.enum_parse(cls, name), m)
            # An INVALID (-1) is no named value.
            self.assertIsNone(cd._L().cd_enum_name(int(kind), -1), cls.__name__)
        self.assertEqual(cd.enum_name(cd.ScheduleKind.CONSTANT_REPORT), "constant-report")
        self.assertEqual(cd.enum_name(cd.Loss.L1), "l1")
        self.assertEqual(cd.enum_name(cd.Reduction.PER_IMAGE), "per_image")
        self.assertEqual(cd.enum_name(cd.DecoderKind.UNET), "unet")
        with self.assertRaises(cd.NotFoundError) as e:
            cd.enum_parse(cd.DegradationKind, "Blur")
        self.assertIn("noise, blur, pixelate, mask, fade", str(e.exception))
        self.assertIsNone(cd._L().cd_enum_name(99, 0))
        self.assertIn("not a cd_enum", cd.last_error())
        self.assertIsNone(cd._L().cd_enum_name(int(cd.NamedEnum.PADDING), 2))
        self.assertIn("2 is not a cd_padding", cd.last_error())
        self.assertEqual(cd._L().cd_enum_count(-1), -1)
        with self.assertRaises(TypeError):
            cd.enum_name(cd.TrainerOption.LR)

    def test_missing_library_raises_clearly(self):
        r = run_python(PRELUDE + "import colddiff as cd\n"
                       "try:\n    cd.Tensor((2,))\n"
                       "except cd.LibraryError as e:\n"
                       "    assert isinstance(e, ImportError) and isinstance(e, cd.ColddiffError)\n"
                       "    print('LibraryError:', e)\n",
                       COLDDIFF_LIBRARY="/nonexistent/libcolddiff.so")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("LibraryError: cannot load libcolddiff", r.stdout)
        self.assertIn("/nonexistent/libcolddiff.so", r.stdout)
        self.assertIn("COLDDIFF_LIBRARY", r.stdout)

    def test_not_a_colddiff_library(self):
        libc = "libc.so.6"
        r = run_python(PRELUDE + "import colddiff as cd\n"
                       "try:\n    cd.version()\n"
                       "except cd.LibraryError as e:\n    print('LibraryError:', e)\n",
                       COLDDIFF_LIBRARY=libc)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("is not libcolddiff", r.stdout)

    def test_abi_mismatch_is_refused(self):
        r = run_python(PRELUDE + "import colddiff as cd\ncd.ABI_VERSION = 99\n"
                       "try:\n    cd.Rng(1)\n"
                       "except cd.LibraryError as e:\n    print('LibraryError:', e)\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ABI version 0", r.stdout)
        self.assertIn("needs ABI 99", r.stdout)

    def test_build_tree_search_without_env(self):
        # Lay out fake build trees around the real library: one above a copy
        # of the module, one above the working directory.
        lib = os.path.abspath(cd.library_path())
        env = {k: v for k, v in os.environ.items() if k != "COLDDIFF_LIBRARY"}
        with open(os.path.join(MODULE_DIR, "colddiff.py")) as f:
            module = f.read()
        with tempfile.TemporaryDirectory() as d:
            def tree(root):
                os.makedirs(os.path.join(root, "build", "lib"))
                path = os.path.join(root, "build", "lib", "libcolddiff.so")
                os.symlink(lib, path)
                return path
            near_module = tree(os.path.join(d, "m"))
            near_cwd = tree(os.path.join(d, "w"))
            for mod_dir in (os.path.join(d, "m", "py"), os.path.join(d, "plain")):
                os.makedirs(mod_dir)
                with open(os.path.join(mod_dir, "colddiff.py"), "w") as f:
                    f.write(module)
            cwd = os.path.join(d, "w", "a", "b")
            os.makedirs(cwd)
            for mod_dir, expected in ((os.path.join(d, "m", "py"), near_module),
                                      (os.path.join(d, "plain"), near_cwd)):
                r = subprocess.run([sys.executable, "-c",
                                    f"import sys; sys.path.insert(0, {mod_dir!r}); "
                                    "import colddiff as cd; print(cd.library_path())"],
                                   capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.strip(), expected)

    def test_works_without_numpy(self):
        code = (PRELUDE + "import builtins\nreal = builtins.__import__\n"
                "def imp(name, *a, **k):\n"
                "    if name == 'numpy' or name.startswith('numpy.'):\n"
                "        raise ImportError('numpy blocked')\n"
                "    return real(name, *a, **k)\n"
                "builtins.__import__ = imp\n"
                "import colddiff as cd\nassert cd._np is None\n"
                "t = cd.Tensor.from_data([[1, 2], [3, 4]])\n"
                "assert t.tolist() == [[1, 2], [3, 4]]\n"
                "try:\n    t.numpy()\nexcept ImportError as e:\n    print('ImportError:', e)\n")
        r = run_python(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ImportError: Tensor.numpy() needs numpy", r.stdout)

    def test_clean_exit_with_live_objects(self):
        # Objects left alive (some in cycles, some borrowing from others) when
        # the interpreter exits must neither crash nor print errors.
        code = (PRELUDE + "import colddiff as cd\n"
                "r = cd.Rng(1)\n"
                "tr = cd.Trainer(cd.Decoder('cnn', r, hidden=(4,), kernel=3, time_freqs=2,"
                " time_hidden=8, time_layers=0), cd.Degradation.noise(cd.Schedule.linear(20)))\n"
                "s = cd.Sampler('ddpm', tr.degradation); s.set_decoder(tr.decoder)\n"
                "p = tr.decoder.params; v = p.view(p.names()[0])\n"
                "t = cd.Tensor((3, 3)); m = t.memoryview(); t.close()\n"
                "class Cycle: pass\n"
                "c = Cycle(); c.self = c; c.t = cd.Tensor((2,)); c.s = s\n"
                "s2 = cd.Sampler('ddpm', tr.degradation)\n"
                "s2.set_predictor(lambda z, tau, out: out.fill(0))\n"
                "print('ok')\n")
        r = run_python(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "ok")
        self.assertEqual(r.stderr, "")


class SignatureTable(unittest.TestCase):
    """_SIGNATURES, the callback types and the cd_option_info Structure
    against the prototypes of both headers (c_header.py parses them).
    Needs no library: a wrong table is caught before ctypes passes a
    truncated int64 or reads a float as a double."""

    @classmethod
    def setUpClass(cls):
        cls.h = read_headers()
        cls.structs = {"cd_option_info": cd._OptionInfoC}

    def problems(self, table, callbacks=None):
        callbacks = cd._CALLBACKS if callbacks is None else callbacks
        return (c_header.check_table(self.h, table, callbacks, self.structs)
                + c_header.check_callbacks(self.h, callbacks, self.structs))

    def test_table_matches_the_headers(self):
        self.assertGreater(len(self.h.functions), 150)
        self.assertEqual(self.problems(cd._SIGNATURES), [])

    def test_option_info_structure_matches_the_header(self):
        self.assertEqual(c_header.check_struct(self.h, "cd_option_info", cd._OptionInfoC), [])

    def test_a_wrong_table_is_caught(self):
        """The check can fail: each kind of mistake in a copy of the table
        is reported, naming the function."""
        P = ctypes.POINTER

        def broken(**changes):
            t = dict(cd._SIGNATURES)
            for name, sig in changes.items():
                if sig is None:
                    del t[name]
                else:
                    t[name] = sig
            return t

        def args_of(name):
            return list(cd._SIGNATURES[name][1])

        def with_arg(name, i, typ):
            a = args_of(name)
            a[i] = typ
            return (cd._SIGNATURES[name][0], a)

        cases = {
            "missing from the table": broken(cd_tensor_create=None),
            "not declared in the header": broken(cd_trainer_bounds=(ctypes.c_int, [])),
            "argument 1 is c_int": broken(cd_tensor_create=with_arg(
                "cd_tensor_create", 1, ctypes.c_int32)),                 # int64_t rank
            "returns c_int": broken(cd_tensor_rank=(ctypes.c_int32, args_of("cd_tensor_rank"))),
            "9 arguments": broken(cd_sampler_restore=(ctypes.c_int,
                                                      args_of("cd_sampler_restore")[:-1])),
            "argument 2 is c_float": broken(cd_degradation_set_prior=with_arg(
                "cd_degradation_set_prior", 2, ctypes.c_float)),         # double std
            "argument 2 is LP_c_long": broken(cd_enum_parse=with_arg(
                "cd_enum_parse", 2, P(ctypes.c_int64))),                 # int32_t *
            "argument 1 is c_void_p": broken(cd_trainer_option_info=with_arg(
                "cd_trainer_option_info", 1, ctypes.c_void_p)),          # cd_option_info *
            "argument 3 is c_void_p": broken(cd_png_write_gray=with_arg(
                "cd_png_write_gray", 3, ctypes.c_void_p)),
            "argument 1 is CFunctionType": broken(cd_sampler_set_progress=with_arg(
                "cd_sampler_set_progress", 1, cd._PREDICTOR_FN)),        # the wrong callback
            "returns None": broken(cd_trainer_swap_ema=(None, args_of("cd_trainer_swap_ema"))),
        }
        for expect, table in cases.items():
            found = self.problems(table)
            self.assertTrue(any(expect in p for p in found), f"{expect!r} not in {found}")
            self.assertEqual(len(found), 1, found)
        # A callback with `void *user` first instead of last.
        bad = dict(cd._CALLBACKS)
        bad["cd_sampler_progress_fn"] = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p,
                                                         ctypes.c_int64, ctypes.c_int64)
        found = c_header.check_callbacks(self.h, bad, self.structs)
        self.assertTrue(any(p.startswith("cd_sampler_progress_fn: argument 0") for p in found),
                        found)
        # A Structure with a field of the wrong width, or a field missing.
        class Info32(ctypes.Structure):
            _fields_ = [(n, ctypes.c_float if n == "lo" else t)
                        for n, t in cd._OptionInfoC._fields_]

        class Info7(ctypes.Structure):
            _fields_ = cd._OptionInfoC._fields_[:-1]
        self.assertIn("cd_option_info.lo: c_float",
                      " ".join(c_header.check_struct(self.h, "cd_option_info", Info32)))
        self.assertTrue(c_header.check_struct(self.h, "cd_option_info", Info7))
        # A type the rules do not cover is reported, not guessed.
        odd = c_header.Header(["CD_API long double cd_odd(short s);"])
        self.assertTrue(c_header.check_table(odd, {"cd_odd": (ctypes.c_double, [ctypes.c_int])},
                                             {}, {}))

    def test_parser_reads_what_the_headers_use(self):
        h = c_header.Header(["""
            #define CD_API
            #define CD_FIRST 1000
            typedef struct cd_thing cd_thing;
            typedef enum cd_color { CD_RED = 0, CD_GREEN, CD_BLUE = 5 } cd_color;
            enum { CD_EXTRA = CD_FIRST, CD_MORE };
            typedef struct cd_pair { const char *name; double lo, hi; int32_t *n; } cd_pair;
            typedef cd_color (*cd_cb)(const cd_thing *t, int64_t n, void *user);
            /* CD_API int cd_commented_out(void); */
            CD_API const char *cd_name(cd_color c,
                                       int64_t shape[3]);
            CD_API void cd_none(void);
            CD_API cd_thing *cd_make(cd_thing **out, cd_cb fn, void *user);
        """])
        self.assertEqual(set(h.functions), {"cd_name", "cd_none", "cd_make"})
        self.assertEqual(h.enums["cd_color"], {"CD_RED": 0, "CD_GREEN": 1, "CD_BLUE": 5})
        self.assertEqual(h.anonymous, {"CD_EXTRA": 1000, "CD_MORE": 1001})
        self.assertEqual([(f, repr(t)) for f, t in h.structs["cd_pair"]],
                         [("name", "char *"), ("lo", "double"), ("hi", "double"),
                          ("n", "int32_t *")])
        ret, args = h.functions["cd_name"]
        self.assertEqual((repr(ret), [repr(a) for a in args]),
                         ("char *", ["cd_color", "int64_t *"]))
        cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
        table = {"cd_name": (ctypes.c_char_p, [ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]),
                 "cd_none": (None, []),
                 "cd_make": (ctypes.c_void_p, [ctypes.POINTER(ctypes.c_void_p), cb,
                                               ctypes.c_void_p])}
        self.assertEqual(c_header.check_table(h, table, {"cd_cb": cb}, {}), [])
        self.assertEqual(c_header.check_callbacks(h, {"cd_cb": cb}, {}), [])

    def test_option_info_layout_against_a_compiler(self):
        """The Structure's size and offsets as a C compiler lays the struct
        out (skipped without one)."""
        import shutil
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler to ask")
        fields = [n for n, _ in cd._OptionInfoC._fields_]
        src = ('#include <stdio.h>\n#include <stddef.h>\n#include "colddiff.h"\n'
               'int main(void) {\n printf("%zu", sizeof(cd_option_info));\n'
               + "".join(f' printf(" %zu", offsetof(cd_option_info, {n}));\n' for n in fields)
               + " return 0;\n}\n")
        with tempfile.TemporaryDirectory() as d:
            c_file, exe = os.path.join(d, "layout.c"), os.path.join(d, "layout")
            with open(c_file, "w") as f:
                f.write(src)
            r = subprocess.run([cc, "-I", os.path.join(ROOT, "include"), c_file, "-o", exe],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                self.skipTest(f"{cc} could not build the layout probe: {r.stderr[:200]}")
            out = subprocess.run([exe], capture_output=True, text=True, timeout=60).stdout.split()
        want = [ctypes.sizeof(cd._OptionInfoC)] + \
            [getattr(cd._OptionInfoC, n).offset for n in fields]
        self.assertEqual([int(x) for x in out], want)


class Interrupts(unittest.TestCase):
    def test_ctrl_c_stops_fit_and_predictor_chains(self):
        # SIGINT while C runs a fit or a Python-driven chain: the fit stops
        # after its batch, the chain at its next predictor call, and the
        # KeyboardInterrupt reaches the caller (not lost in a ctypes callback).
        code = PRELUDE + f"""
import os, signal, threading, time
import colddiff as cd
ds = cd.Dataset.load_idx({IMAGES!r}, {LABELS!r})
r = cd.Rng(1)
tr = cd.Trainer(cd.Decoder('cnn', r, hidden=(4, 4), kernel=3, time_freqs=4, time_hidden=16,
                           time_layers=1), cd.Degradation.noise(cd.Schedule.linear(50)))
tr['batch'] = 10
def interrupt_when(ready):
    # Only once the call is under way: a loaded machine may take longer than
    # any fixed delay to get there, and a SIGINT before the try is no test.
    def go():
        while not ready():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=go, daemon=True).start()
interrupt_when(lambda: tr.progress('running') == 1.0 and tr.progress('batch') > 0)
try:
    tr.fit(ds, 1000, r, on_epoch=lambda *a: None)
except KeyboardInterrupt:
    print('fit interrupted at epoch', int(tr.progress('epoch')), 'running',
          tr.progress('running'))
s = cd.Sampler('cold1', cd.Degradation.mask(cd.Schedule.linear(100000)))
calls = []
s.set_predictor(lambda z, tau, out: calls.append(time.sleep(0.001)))
x = cd.Tensor((1, 1, 28, 28))
interrupt_when(lambda: len(calls) > 0)
try:
    s.restore(x, 100000)
except KeyboardInterrupt:
    print('chain interrupted after', 0 < len(calls) < 100000, 'calls')
"""
        r = run_python(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("fit interrupted at epoch", r.stdout)
        self.assertIn("running 0.0", r.stdout)
        self.assertIn("chain interrupted after True calls", r.stdout)
        self.assertNotIn("Exception ignored", r.stderr)


class Errors(TempDirCase):
    def test_status_classes(self):
        for st in cd.Status:
            if st == cd.Status.OK:
                continue
            e = cd._error(int(st), "msg")
            self.assertIsInstance(e, cd.ColddiffError)
            self.assertEqual(e.status, st)
            self.assertEqual(str(e), "msg")
            self.assertTrue(cd.status_string(st))
        self.assertIsInstance(cd._error(-3, "x"), ValueError)
        self.assertIsInstance(cd._error(-2, "x"), MemoryError)
        self.assertIsInstance(cd._error(-7, "x"), OSError)
        self.assertIsInstance(cd._error(-12, "x"), RuntimeError)
        self.assertIsInstance(cd._error(-99, "x"), cd.ColddiffError)

    def test_errors_carry_last_error(self):
        with self.assertRaises(cd.NotFoundError) as cm:
            cd.Dataset.load_mnist(self.path("nowhere"))
        self.assertEqual(cm.exception.status, cd.Status.NOT_FOUND)
        self.assertIn("nowhere", str(cm.exception))
        self.assertEqual(cd.last_error(), str(cm.exception))
        with self.assertRaises(cd.RangeError) as cm:
            cd.set_num_threads(0)
        self.assertIn("cd_set_num_threads", str(cm.exception))
        cd.clear_error()
        self.assertEqual(cd.last_error(), "")

    def test_fifo_is_refused_not_waited_on(self):
        # Opening a FIFO without a writer blocks: a child process with a
        # time limit turns a hang into a failure instead of a stuck suite.
        fifo = self.path("fifo.cdm")
        os.mkfifo(fifo)
        code = PRELUDE + (
            "import colddiff as cd, cdm_format\n"
            "for load in (cd.Trainer.load, cd.Decoder.load, cd.Classifier.load,\n"
            "             lambda p: cd.Dataset.load_idx(p, p), cdm_format.read):\n"
            "    try:\n"
            "        load(sys.argv[1])\n"
            "    except OSError as e:\n"
            "        print(e)\n")
        r = subprocess.run([sys.executable, "-c", code, fifo], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 5, r.stdout)
        for line in lines:
            self.assertIn("fifo.cdm", line)
            self.assertIn("FIFO", line)

    def test_python_reader_checks_the_header_first(self):
        import cdm_format
        # 4 GiB of zeros, sparse: refused on its magic without being read.
        zeros = self.path("zeros.cdm")
        with open(zeros, "wb") as f:
            f.truncate(1 << 32)
        t = time.monotonic()
        with self.assertRaises(cdm_format.CheckpointError) as cm:
            cdm_format.read(zeros)
        self.assertIn("magic", str(cm.exception))
        self.assertLess(time.monotonic() - t, 2.0)

    def test_threads(self):
        n = cd.get_num_threads()
        self.assertGreaterEqual(n, 1)
        cd.set_num_threads(1)
        self.assertEqual(cd.get_num_threads(), 1)
        cd.set_num_threads(n)
        with self.assertRaises(TypeError):
            cd.set_num_threads("2")
        with self.assertRaises(cd.RangeError):
            cd.set_num_threads(10 ** 12)


class TensorTests(unittest.TestCase):
    def test_create_and_shape(self):
        with cd.Tensor((2, 3, 4)) as t:
            self.assertEqual(t.shape, (2, 3, 4))
            self.assertEqual((t.rank, t.ndim, t.numel, t.size, len(t)), (3, 3, 24, 24, 2))
            self.assertEqual((t.dim(0), t.dim(-1)), (2, 4))
            self.assertEqual(t.to_array().tolist(), [0.0] * 24)
            self.assertIn("shape=(2, 3, 4)", repr(t))
        self.assertTrue(t.closed)
        self.assertIn("closed", repr(t))
        self.assertEqual(cd.Tensor(5).shape, (5,))
        self.assertEqual(cd.Tensor((2,), fill=3).tolist(), [3.0, 3.0])

    def test_copy_rows(self):
        a = cd.Tensor.from_data([[0, 1], [2, 3], [4, 5]])
        b = cd.Tensor((2, 2))
        b.copy_rows(0, a, 1)
        self.assertEqual(b.tolist(), [[2, 3], [4, 5]])
        a.copy_rows(0, b, 1, 1)
        self.assertEqual(a.tolist(), [[4, 5], [2, 3], [4, 5]])
        with self.assertRaises(cd.RangeError):
            b.copy_rows(1, a, 0, 2)
        with self.assertRaises(cd.ShapeError):
            b.copy_rows(0, cd.Tensor((1, 3)), 0, 1)
        with self.assertRaises(TypeError):
            b.copy_rows(0, [[1, 2]])

    def test_data_in_and_out(self):
        t = cd.Tensor.from_data([[1, 2, 3], [4, 5, 6]])
        self.assertEqual(t.shape, (2, 3))
        self.assertEqual(t.tolist(), [[1, 2, 3], [4, 5, 6]])
        t.copy_from(array.array("f", range(6)))
        self.assertEqual(t.to_array().tolist(), [0, 1, 2, 3, 4, 5])
        t.copy_from(struct.pack("6f", *range(10, 16)))  # bytes, read-only
        self.assertEqual(t.to_array()[0], 10)
        t.copy_from((7,) * 6)
        self.assertEqual(t.tolist()[1], [7, 7, 7])
        u = cd.Tensor.from_data(t, shape=(3, 2))
        self.assertEqual(u.shape, (3, 2))
        t.fill(float("nan"))
        self.assertTrue(math.isnan(t.to_array()[5]))
        self.assertEqual(u.tolist()[0], [7, 7])
        t.reshape(6)
        self.assertEqual(t.shape, (6,))
        t.reshape(3, 2).reshape((1, 6))
        self.assertEqual(t.shape, (1, 6))

    def test_clone_is_independent(self):
        t = cd.Tensor.from_data([1.0, 2.0])
        c = t.clone()
        t.fill(0)
        self.assertEqual(c.tolist(), [1.0, 2.0])

    def test_memoryview_is_zero_copy(self):
        t = cd.Tensor((2, 2))
        mv = t.memoryview()
        self.assertEqual((mv.format, mv.shape, mv.readonly), ("f", (2, 2), False))
        mv[1, 0] = 5.0
        self.assertEqual(t.tolist(), [[0, 0], [5, 0]])
        t.fill(2)
        self.assertEqual(mv[0, 1], 2.0)
        # copying from a view of itself (overlapping memory) is safe
        t.copy_from(mv)
        self.assertEqual(t.tolist(), [[2, 2], [2, 2]])
        # the view keeps the memory alive after close()
        t.close()
        with self.assertRaises(cd.ClosedError):
            t.numel
        self.assertEqual(mv.tolist(), [[2, 2], [2, 2]])
        mv[0, 0] = 1.0
        del mv
        gc.collect()

    @unittest.skipUnless(sys.version_info >= (3, 12), "PEP 688 __buffer__ needs Python 3.12")
    def test_buffer_protocol(self):
        t = cd.Tensor.from_data([1.0, 2.0])
        self.assertEqual(memoryview(t).tolist(), [1.0, 2.0])

    def test_bad_shapes(self):
        for shape in [(), (2, 0), (3, -1), (1,) * 9]:
            with self.assertRaises(cd.ShapeError, msg=shape):
                cd.Tensor(shape)
        with self.assertRaises(cd.RangeError):
            cd.Tensor((2 ** 70,))
        with self.assertRaises(cd.ColddiffError):  # too big for memory: C says so
            cd.Tensor((2 ** 62, 2 ** 10))
        t = cd.Tensor((2, 3))
        with self.assertRaises(cd.ShapeError):
            t.copy_from([1, 2, 3])
        with self.assertRaises(cd.ShapeError):
            t.reshape(4, 2)
        self.assertEqual(t.shape, (2, 3))
        with self.assertRaises(cd.ShapeError):
            cd.Tensor.from_data([[1, 2], [3]])
        with self.assertRaises(cd.ShapeError):
            cd.Tensor.from_data([])
        with self.assertRaises(cd.RangeError):
            t.dim(2)

    def test_wrong_types(self):
        for bad in ["abc", (2.5,), (True, 2), None, {1: 2}]:
            with self.assertRaises((TypeError, cd.ShapeError), msg=repr(bad)):
                cd.Tensor(bad)
        t = cd.Tensor((3,))
        with self.assertRaises(TypeError):
            t.copy_from(array.array("d", [1, 2, 3]))
        with self.assertRaises(TypeError):
            t.copy_from(["a", "b", "c"])
        with self.assertRaises(TypeError):
            t.copy_from(object())
        with self.assertRaises(TypeError):
            t.fill("1")
        with self.assertRaises(TypeError):
            cd.Rng(1).fill_normal([1, 2, 3])

    def test_use_after_close(self):
        t = cd.Tensor((2,))
        t.close()
        t.close()  # idempotent
        for op in (lambda: t.shape, lambda: t.fill(1), lambda: t.tolist(),
                   lambda: t.memoryview(), lambda: t.clone(), lambda: cd.Rng(1).fill_normal(t),
                   lambda: t.__enter__()):
            with self.assertRaises(cd.ClosedError):
                op()
        self.assertIsInstance(cd.ClosedError("x"), ValueError)


class RngTests(unittest.TestCase):
    def test_streams(self):
        a, b = cd.Rng(42), cd.Rng(42)
        x = a.normal(100)
        self.assertEqual(x, b.normal(100))
        self.assertNotEqual(x, cd.Rng(43).normal(100))
        u = a.uniform(1000)
        self.assertTrue(all(0 <= v < 1 for v in u))
        ints = a.int_range(1000, -3, 3)
        self.assertEqual(set(ints), set(range(-3, 4)))
        self.assertEqual(len(a.normal(0)), 0)

    def test_state_and_split(self):
        r = cd.Rng(7)
        s = r.state
        self.assertEqual(len(s), cd.RNG_STATE_WORDS)
        first = r.uniform(8)
        r.state = s
        self.assertEqual(r.uniform(8), first)
        c1, c2 = r.split(3), r.split(3)
        self.assertEqual(c1.normal(4), c2.normal(4))
        self.assertNotEqual(r.split(4).normal(4), cd.Rng(7).split(3).normal(4))
        with self.assertRaises(cd.ShapeError):
            r.state = (1, 2)
        with self.assertRaises(cd.RangeError):
            r.state = (1, 2, 3, -4)

    def test_tensors_and_bad_use(self):
        r = cd.Rng(0)
        t = r.fill_normal(cd.Tensor((50, 40)))
        xs = t.to_array()
        self.assertLess(abs(sum(xs) / len(xs)), 0.1)
        r.fill_uniform(t)
        self.assertTrue(all(0 <= v < 1 for v in t.to_array()))
        with self.assertRaises(cd.RangeError):
            cd.Rng(-1)
        with self.assertRaises(TypeError):
            cd.Rng("seed")
        with self.assertRaises(cd.RangeError):
            r.normal(-1)
        with self.assertRaises(cd.ColddiffError):
            r.int_range(2, 5, 1)
        r.close()
        with self.assertRaises(cd.ClosedError):
            r.normal(1)


class ScheduleTests(unittest.TestCase):
    def test_constructors(self):
        K = cd.ScheduleKind
        cases = [
            (cd.Schedule.linear(100), K.LINEAR),
            (cd.Schedule.constant(50, 0.01), K.CONSTANT),
            (cd.Schedule.constant_report(50, 0.01), K.CONSTANT_REPORT),
            (cd.Schedule.cosine(80), K.COSINE),
            (cd.Schedule.cosine_report(80), K.COSINE_REPORT),
            (cd.Schedule.custom([0.1, 0.2, 0.3]), K.CUSTOM),
            (cd.Schedule.from_arrays([0, 0.1, 0.2], [1, 0.9, 0.72]), K.ARRAYS),
            (cd.Schedule.linear_report(), K.LINEAR_REPORT),
        ]
        for s, kind in cases:
            self.assertEqual(s.kind, kind)
            b, a = s.arrays()
            self.assertEqual(len(b), s.T + 1)
            self.assertEqual(len(s), s.T + 1)
            self.assertAlmostEqual(s.at(s.T)[1], a[-1])
        # The report's float32 arithmetic leaves alpha-bar_1000 at these bits.
        import struct
        abar_T = cd.Schedule.linear_report().at(1000)[1]
        self.assertEqual(struct.pack("<f", abar_T), struct.pack("<I", 0x38294660))
        lin = cases[0][0]
        self.assertEqual(lin.T, 100)
        self.assertAlmostEqual(lin.at(1)[0], 1e-4, places=7)
        self.assertAlmostEqual(lin.at(100)[0], 0.02, places=6)
        self.assertAlmostEqual(cases[1][0].at(2)[1], 0.99 ** 2, places=5)
        self.assertEqual(cases[5][0].T, 3)

    def test_bad_use(self):
        with self.assertRaises(TypeError):
            cd.Schedule()
        with self.assertRaises(cd.ColddiffError):
            cd.Schedule.linear(0)
        with self.assertRaises(cd.ColddiffError):
            cd.Schedule.constant(10, 1.5)
        with self.assertRaises(cd.ColddiffError):
            cd.Schedule.linear(10).at(11)
        with self.assertRaises(cd.ShapeError):
            cd.Schedule.from_arrays([0, 0.1], [1, 0.9, 0.8])
        with self.assertRaises(cd.ShapeError):
            cd.Schedule.custom([])
        with self.assertRaises(TypeError):
            cd.Schedule.linear("100")


class DegradationTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ds = slice_dataset()
        cls.x, _ = cls.ds.gather("train", [0, 1, 2, 3], labels=False)

    def test_all_operators(self):
        s = cd.Schedule.linear(20)
        blur_s = cd.Schedule.constant(20, 1.0)
        mean = self.ds.mean_image()
        ops = {
            "noise": cd.Degradation.noise(s),
            "blur": cd.Degradation.blur(blur_s, 5, "circular"),
            "pixelate": cd.Degradation.pixelate(s),
            "mask": cd.Degradation.mask(s, 2.0),
            "fade": cd.Degradation.fade(s, mean),
        }
        mean.close()  # fade copied it
        for name, d in ops.items():
            self.assertEqual(d.kind.name.lower(), name)
            self.assertEqual(d.T, 20)
            self.assertEqual(d.target, cd.Target.NOISE if name == "noise" else cd.Target.IMAGE)
            z = d.apply(self.x, 0, cd.Rng(1))
            if name != "noise":
                self.assertEqual(z.to_array(), self.x.to_array(), name)  # D(x, 0) = x
            z = d.apply(self.x, [20, 10, 5, 1], cd.Rng(1))
            self.assertEqual(z.shape, self.x.shape)
            self.assertNotEqual(z.to_array(), self.x.to_array(), name)
        z, eps = ops["noise"].apply(self.x, 20, cd.Rng(2), eps=True)
        self.assertEqual(eps.shape, self.x.shape)
        self.assertEqual(ops["mask"].apply(self.x, 20).to_array().tolist(),
                         [0.0] * self.x.numel)

    def test_priors(self):
        noise = cd.Degradation.noise(cd.Schedule.linear(10))
        self.assertEqual(noise.prior, cd.Prior(0.0, 1.0, 0.0, False) if not noise.prior.fitted
                         else noise.prior)
        with self.assertRaises(cd.UnsupportedError):
            noise.set_prior(0, 1, 0)
        blur = cd.Degradation.blur(cd.Schedule.constant(10, 1.0))
        p = blur.get_prior()
        self.assertAlmostEqual(p.mean, -0.36)
        self.assertFalse(p.fitted)
        blur.fit_prior(self.ds, "train", max_images=100)
        self.assertTrue(blur.prior.fitted)
        blur.set_prior(-0.3, 0.01, 0.0)
        self.assertEqual(blur.prior[:3], (-0.3, 0.01, 0.0))
        z = blur.sample_prior(cd.Rng(3), (3, 1, 28, 28))
        self.assertEqual(z.shape, (3, 1, 28, 28))
        with self.assertRaises(cd.ColddiffError):
            blur.set_prior(0, -1, 0)
        with self.assertRaises(cd.RangeError):
            blur.fit_prior(self.ds, "train", max_images=-1)

    def test_bad_use(self):
        d = cd.Degradation.noise(cd.Schedule.linear(10))
        with self.assertRaises(TypeError):
            cd.Degradation()
        with self.assertRaises(TypeError):
            cd.Degradation.noise("linear")
        with self.assertRaises(cd.RangeError):
            d.apply(self.x, 11, cd.Rng(1))
        with self.assertRaises(cd.ShapeError):
            d.apply(self.x, [1, 2], cd.Rng(1))
        with self.assertRaises(cd.ColddiffError):
            d.apply(self.x, 1, None)  # the noise operator needs an rng
        with self.assertRaises(cd.ShapeError):
            d.apply(self.x, 1, cd.Rng(1), out=cd.Tensor((4, 1, 28, 27)))
        with self.assertRaises(TypeError):
            d.apply(self.x, "1", cd.Rng(1))
        with self.assertRaises(cd.InvalidArgumentError):
            cd.Degradation.blur(cd.Schedule.constant(10, 1.0), padding="zeros")
        with self.assertRaises(cd.ColddiffError):
            cd.Degradation.blur(cd.Schedule.constant(10, 1.0), kernel_size=4)
        with self.assertRaises(cd.ShapeError):
            fade = cd.Degradation.fade(cd.Schedule.linear(10), cd.Tensor((1, 28, 28)))
            fade.apply(cd.Tensor((2, 1, 14, 14)), 1)


class ParamsTests(unittest.TestCase):
    def test_own_params(self):
        p = cd.Params()
        p.add("a.weight", (2, 3))
        p.add("a.bias", 3)
        self.assertEqual(p.names(), ["a.weight", "a.bias"])
        self.assertEqual((len(p), p.numel), (2, 9))
        self.assertEqual(p.index("a.bias"), 1)
        self.assertEqual(p.shape("a.weight"), (2, 3))
        self.assertIn("a.bias", p)
        self.assertNotIn("nope", p)
        p["a.bias"] = [1, 2, 3]
        self.assertEqual(p["a.bias"].tolist(), [1, 2, 3])
        v = p.view("a.weight")
        v[1, 2] = 9
        self.assertEqual(p.get("a.weight")[5], 9)
        self.assertEqual(p.view().tolist()[-3:], [1, 2, 3])
        g = p.grad_view("a.bias")
        g[0] = 4
        self.assertEqual(p.get_grad("a.bias")[0], 4)
        p.zero_grad()
        self.assertEqual(p.get_grad("a.bias").tolist(), [0, 0, 0])
        with self.assertRaises(KeyError):
            p["nope"]
        with self.assertRaises(cd.ShapeError):
            p["a.bias"] = [1, 2]
        with self.assertRaises(TypeError):
            p.add(3, (1,))
        with self.assertRaises(cd.StateError):  # laid out after the first access
            p.add("late", (1,))

    def test_decoder_params_keep_decoder_alive(self):
        dec = tiny_decoder(cd.Rng(1))
        p = dec.params
        self.assertTrue(p.borrowed)
        name = p.names()[0]
        before = p.get(name)
        dec.close()
        with self.assertRaises(cd.ClosedError):
            dec.param_count
        self.assertEqual(p.get(name), before)  # still readable: p holds it
        p.close()


class DecoderTests(TempDirCase):
    def test_config(self):
        cfg = cd.DecoderConfig("cnn")
        self.assertEqual(cfg["hidden"], (16, 32, 32, 16))
        self.assertEqual(cfg.get(cd.DecoderOption.KERNEL), 7)
        cfg["hidden"] = (8, 8)
        cfg.set("time_hidden", 32)
        self.assertEqual(cfg.options()["hidden"], (8, 8))
        self.assertEqual(cfg.get("TIME_HIDDEN"), 32)
        info = cd.DecoderConfig.option_info("kernel")
        self.assertLessEqual(info.lo, 7)
        self.assertGreaterEqual(info.hi, 7)
        self.assertEqual((info.type, info.default_value), (cd.OptionType.INT, 7))
        unet = cd.DecoderConfig("unet", dim=16)
        self.assertEqual((unet["dim_mults"], unet["dim"]), ((1, 2, 4), 16))
        self.assertEqual(cd.DecoderConfig(cd.DecoderKind.CNN, kernel=3)["kernel"], 3)
        with self.assertRaises(cd.InvalidArgumentError):
            cfg["no_such_key"] = 1
        with self.assertRaises(cd.RangeError):
            cfg["kernel"] = 4
        with self.assertRaises(cd.RangeError):
            cfg["kernel"] = 10 ** 6
        with self.assertRaises(TypeError):
            cfg["kernel"] = 3.0
        with self.assertRaises(cd.ColddiffError):
            cfg["hidden"] = ()
        with self.assertRaises(cd.InvalidArgumentError):
            cd.DecoderConfig("transformer")

    def test_forward_backward_save_load(self):
        rng = cd.Rng(5)
        dec = tiny_decoder(rng)
        self.assertEqual(dec.kind, cd.DecoderKind.CNN)
        self.assertEqual(dec.config["hidden"], (4, 4))
        self.assertEqual(dec.param_count, dec.params.numel)
        self.assertGreater(dec.workspace_size(2, 28, 28), 0)
        z = rng.fill_normal(cd.Tensor((2, 1, 28, 28)))
        out = dec.forward(z, [0.5, 0.25])
        self.assertEqual(out.shape, z.shape)
        out2 = dec.forward(z, cd.Tensor.from_data([0.5, 0.25]), out=cd.Tensor((2, 1, 28, 28)))
        self.assertEqual(out.to_array(), out2.to_array())
        # infer: the same bits, and nothing kept for a backward
        self.assertEqual(dec.infer(z, [0.5, 0.25]).to_array(), out.to_array())
        with self.assertRaises(cd.StateError):
            dec.backward(cd.Tensor((2, 1, 28, 28), fill=1.0))
        dec.forward(z, [0.5, 0.25])
        dec.params.zero_grad()
        dz = dec.backward(cd.Tensor((2, 1, 28, 28), fill=1.0), dz=True)
        self.assertEqual(dz.shape, z.shape)
        # a backward uses up its forward
        with self.assertRaises(cd.StateError):
            dec.backward(cd.Tensor((2, 1, 28, 28), fill=1.0))
        self.assertTrue(any(v != 0 for v in dec.params.grad_view().tolist()))
        path = self.path("tiny.cdm")
        dec.save(path)
        back = cd.Decoder.load(path)
        self.assertEqual(back.config.options(), dec.config.options())
        for name in dec.params:
            self.assertEqual(back.params[name], dec.params[name], name)
        self.assertEqual(back.forward(z, [0.5, 0.25]).to_array(), out.to_array())
        # change a weight by name, save, load: the change is kept
        first = dec.params.names()[0]
        dec.params[first] = [0.5] * dec.params.numel_at(first)
        dec.save(path)
        self.assertEqual(set(cd.Decoder.load(path).params[first]), {0.5})

    def test_bad_use(self):
        rng = cd.Rng(1)
        dec = tiny_decoder(rng)
        with self.assertRaises(TypeError):
            cd.Decoder("cnn", None)
        with self.assertRaises(TypeError):
            cd.Decoder(cd.DecoderConfig(), rng, kernel=3)
        with self.assertRaises(cd.ShapeError):
            dec.forward(cd.Tensor((2, 1, 27, 28)), [0.1, 0.1])
        with self.assertRaises(cd.ShapeError):
            dec.forward(cd.Tensor((2, 1, 28, 28)), [0.1, 0.2, 0.3])
        with self.assertRaises(cd.NotFiniteError):
            dec.forward(cd.Tensor((1, 1, 28, 28)), [float("nan")])
        vals = [0.0] * (2 * 28 * 28)
        vals[28 * 28 + 5] = float("nan")  # image 1, row 0, column 5
        z = cd.Tensor.from_data(vals, (2, 1, 28, 28))
        with self.assertRaises(cd.NotFiniteError) as cm:
            dec.forward(z, [0.1, 0.1])
        self.assertIn("z[789] is nan (image 1, channel 0, row 0, column 5)", str(cm.exception))
        self.assertIsInstance(cm.exception, ValueError)
        dout = dec.forward(cd.Tensor((2, 1, 28, 28)), [0.1, 0.1])
        dout.fill(float("inf"))
        with self.assertRaises(cd.NotFiniteError):
            dec.backward(dout)
        with self.assertRaises(TypeError):
            dec.forward([[0.0]], [0.1])
        with self.assertRaises(cd.NotFoundError):
            cd.Decoder.load(self.path("missing.cdm"))
        junk = self.path("junk.cdm")
        with open(junk, "wb") as f:
            f.write(b"not a checkpoint at all" * 10)
        with self.assertRaises(cd.FormatError):
            cd.Decoder.load(junk)
        with self.assertRaises(cd.NotFoundError):
            dec.save(self.path("no/such/dir/x.cdm"))
        with self.assertRaises(cd.InvalidArgumentError):
            dec.save("bad\0path")
        with self.assertRaises(TypeError):
            dec.save(42)


class ConditionalTests(TempDirCase):
    def test_labels_dropout_and_guidance(self):
        rng = cd.Rng(7)
        dec = tiny_decoder(rng, classes=3)
        self.assertEqual((dec.class_count, tiny_decoder(rng).class_count), (3, 0))
        z = rng.fill_normal(cd.Tensor((3, 1, 28, 28)))
        plain = dec.infer(z, [0.3, 0.5, 0.9]).to_array()
        self.assertEqual(dec.infer(z, [0.3, 0.5, 0.9], labels=[-1, -1, -1]).to_array(), plain)
        labeled = dec.forward(z, [0.3, 0.5, 0.9], labels=[0, 2, -1]).to_array()
        size = 28 * 28
        self.assertNotEqual(labeled[:size], plain[:size])
        self.assertEqual(labeled[2 * size:], plain[2 * size:])
        with self.assertRaises(cd.RangeError):
            dec.forward(z, [0.3, 0.5, 0.9], labels=[0, 3, 1])
        with self.assertRaises(cd.ShapeError):
            dec.forward(z, [0.3, 0.5, 0.9], labels=[0, 1])
        with self.assertRaises(cd.InvalidArgumentError):
            tiny_decoder(rng).forward(z, [0.3, 0.5, 0.9], labels=[0, 1, 2])
        path = self.path("cond.cdm")
        dec.save(path)
        self.assertEqual(cd.Decoder.load(path).class_count, 3)

        tr = cd.Trainer(dec, cd.Degradation.noise(cd.Schedule.linear(20)))
        self.assertAlmostEqual(tr["label_dropout"], 0.1)
        tr["label_dropout"] = 0.5
        x = cd.Tensor((3, 1, 28, 28), fill=0.1)
        self.assertGreater(tr.step(x, rng, labels=[0, 1, 2]), 0)
        self.assertEqual(tr.steps, 1)

        s = cd.Sampler("ddim", tr.degradation, steps=4)
        s.set_decoder(dec)
        self.assertEqual(s["guidance"], 1.0)
        out_plain = s.sample(cd.Rng(3), cd.Tensor((2, 1, 28, 28))).to_array()
        s.set_labels([1, 2], guidance=0)
        self.assertEqual(s.sample(cd.Rng(3), cd.Tensor((2, 1, 28, 28))).to_array(), out_plain)
        s.set_labels([1, 2], guidance=3)
        self.assertNotEqual(s.sample(cd.Rng(3), cd.Tensor((2, 1, 28, 28))).to_array(), out_plain)
        with self.assertRaises(cd.ShapeError):
            s.sample(cd.Rng(3), cd.Tensor((3, 1, 28, 28)))
        with self.assertRaises(cd.RangeError):
            s.set_labels([0.5, 1])
        s.set_labels(None)
        self.assertEqual(s.sample(cd.Rng(3), cd.Tensor((2, 1, 28, 28))).to_array(), out_plain)


class DatasetTests(TempDirCase):
    def test_load_mnist_and_idx(self):
        # load_mnist wants the four MNIST names: give it the slice twice.
        for kind in ("train", "t10k"):
            os.symlink(IMAGES, self.path(f"{kind}-images-idx3-ubyte.gz"))
            os.symlink(LABELS, self.path(f"{kind}-labels-idx1-ubyte.gz"))
        ds = cd.Dataset.load_mnist(self.tmp)
        self.assertEqual((ds.count("train"), ds.count("val"), ds.count("test")), (1000, 0, 1000))
        self.assertEqual(ds.image_shape, (1, 28, 28))
        ds2 = cd.Dataset.load_idx(IMAGES, LABELS, IMAGES, LABELS)
        self.assertEqual(ds2.count(cd.Split.TEST), 1000)
        ds3 = cd.Dataset.load_idx(IMAGES, LABELS)
        self.assertEqual((len(ds3), ds3.count("test")), (1000, 0))

    def test_load_folder(self):
        for cls, seed in (("cat", 10), ("ant", 20)):
            os.mkdir(self.path(cls))
            for i in range(3):
                px = bytes(range(seed + i, seed + i + 12))
                cd.write_png_gray(self.path(f"{cls}/{i}.png"), px, 3, 4)
        ds = cd.Dataset.load_folder(self.tmp)
        self.assertEqual((len(ds), ds.image_shape), (6, (1, 3, 4)))
        self.assertEqual((ds.class_count, ds.class_names), (2, ["ant", "cat"]))
        self.assertEqual(ds.class_name(1), "cat")
        imgs, labels = ds.gather("train", [0, 5])
        self.assertEqual(list(labels.to_array()), [0.0, 1.0])
        want = ctypes.c_float(ctypes.c_float(20 / 255).value - 0.5).value  # p/255 - 0.5
        self.assertEqual(imgs.to_array()[0], want)
        rgb = cd.Dataset.load_folder(self.tmp, channels=3, crop=2)
        self.assertEqual(rgb.image_shape, (3, 2, 2))
        ds.split(0.5, 1)
        self.assertEqual((ds.count("train"), ds.count("val")), (3, 3))
        with self.assertRaises(cd.RangeError):
            ds.class_name(2)
        with self.assertRaises(cd.RangeError):
            cd.Dataset.load_folder(self.tmp, channels=2)
        with self.assertRaises(cd.RangeError):
            cd.Dataset.load_folder(self.tmp, crop=5)
        with self.assertRaises(cd.NotFoundError):
            cd.Dataset.load_folder(self.path("nowhere"))
        with open(self.path("ant/bad.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
        with self.assertRaises(cd.FormatError):
            cd.Dataset.load_folder(self.tmp)
        self.assertEqual(slice_dataset().class_count, 0)

    def test_split_shuffle_batches(self):
        ds = slice_dataset(0.2, 42)
        self.assertEqual((ds.count("train"), ds.count("val")), (800, 200))
        imgs, labels = ds.gather("train", [0, 5, 799])
        self.assertEqual(imgs.shape, (3, 1, 28, 28))
        self.assertTrue(all(0 <= v <= 9 and v == int(v) for v in labels.to_array()))
        px = imgs.to_array()
        self.assertGreaterEqual(min(px), -0.5)
        self.assertLessEqual(max(px), 0.5)
        b1, l1, got = ds.batch("train", 0, 16)
        self.assertEqual(got, 16)
        rng = cd.Rng(3)
        ds.shuffle("train", rng)
        b2, _, _ = ds.batch("train", 0, 16)
        self.assertNotEqual(b1.to_array(), b2.to_array())
        images = cd.Tensor((16, 28, 28))  # N x H x W works too
        self.assertEqual(ds.fill_batch("val", 192, images), 8)  # past the end
        self.assertEqual(set(images.to_array()[8 * 784:]), {0.0})
        mean = ds.mean_image("train")
        self.assertEqual(mean.shape, (1, 28, 28))
        split_file = self.path("split.txt")
        with open(split_file, "w") as f:
            f.write("\n".join(str(i) for i in range(10)) + "\n")
        ds.split_from_file(split_file)
        self.assertEqual((ds.count("train"), ds.count("val")), (10, 990))
        ds.truncate("val", 100)
        self.assertEqual(ds.count("val"), 100)
        with self.assertRaises(cd.RangeError):
            ds.truncate("val", -1)

    def test_bad_use(self):
        ds = slice_dataset()
        with self.assertRaises(TypeError):
            cd.Dataset()
        with self.assertRaises(cd.NotFoundError):
            cd.Dataset.load_idx(self.path("a"), self.path("b"))
        with self.assertRaises(cd.InvalidArgumentError):
            cd.Dataset.load_idx(IMAGES, LABELS, IMAGES)
        with self.assertRaises(cd.RangeError):
            ds.split(1.5)
        with self.assertRaises(cd.InvalidArgumentError):
            ds.count("holdout")
        with self.assertRaises(cd.RangeError):
            ds.gather("train", [0, 10 ** 6])
        with self.assertRaises(cd.RangeError):
            ds.gather("train", [])
        with self.assertRaises(cd.ShapeError):
            ds.fill_batch("train", 0, cd.Tensor((4, 1, 28, 20)))
        with self.assertRaises(cd.RangeError):
            ds.fill_batch("train", -1, cd.Tensor((4, 1, 28, 28)))
        with self.assertRaises(TypeError):
            ds.shuffle("train", 42)
        bad = self.path("bad.txt")
        with open(bad, "w") as f:
            f.write("1\n1\n")
        with self.assertRaises(cd.FormatError):
            ds.split_from_file(bad)


class ImageTests(TempDirCase):
    def test_png_and_grid(self):
        p = self.path("g.png")
        cd.write_png_gray(p, bytes(range(12)), 3, 4)  # height 3, width 4
        with open(p, "rb") as f:
            head = f.read(24)
        self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(struct.unpack(">II", head[16:24]), (4, 3))  # IHDR: width, height
        ds = slice_dataset()
        imgs, _ = ds.gather("train", list(range(10)), labels=False)
        grid = self.path("grid.png")
        cd.write_image_grid(grid, imgs, columns=5)
        cd.write_image_grid(self.path("grid2.png"), imgs, 4, 1, 128, "percentile")
        self.assertGreater(os.path.getsize(grid), 100)
        with self.assertRaises(cd.ShapeError):
            cd.write_png_gray(p, b"abc", 2, 2)
        with self.assertRaises(cd.NotFoundError):
            cd.write_image_grid(self.path("nope/grid.png"), imgs)
        with self.assertRaises(cd.RangeError):
            cd.write_image_grid(grid, imgs, columns=0)
        rgb = self.path("rgb.png")
        colour = cd.Tensor((2, 3, 5, 7))
        colour.fill(0.25)
        cd.write_image_grid(rgb, colour, columns=2, border=1)
        with open(rgb, "rb") as f:
            head = f.read(26)
        self.assertEqual(struct.unpack(">II", head[16:24]), (17, 7))
        self.assertEqual(head[25], 2)  # colour type: RGB
        with self.assertRaises(cd.ShapeError):
            cd.write_image_grid(grid, cd.Tensor((2, 2, 28, 28)))
        imgs.fill(float("inf"))
        with self.assertRaises(cd.NotFiniteError):
            cd.write_image_grid(grid, imgs)
        with self.assertRaises(TypeError):
            cd.write_png_gray(p, "text", 2, 2)


class MetricsTests(unittest.TestCase):
    def setUp(self):
        if not cd.has_function("cd_metrics_images"):
            self.skipTest("the loaded libcolddiff has no metrics yet")

    def test_image_metrics(self):
        ds = slice_dataset()
        x, _ = ds.gather("train", list(range(8)), labels=False)
        m = cd.image_metrics(x, x)
        self.assertAlmostEqual(m.rmse, 0.0)
        self.assertAlmostEqual(m.ssim, 1.0, places=5)
        self.assertAlmostEqual(m.psnr, 80.0, places=5)
        self.assertEqual(m.reduction, cd.Reduction.PER_IMAGE)
        y = cd.Degradation.blur(cd.Schedule.constant(5, 1.0)).apply(x, 5)
        m2 = cd.image_metrics(x, y, "report")
        self.assertEqual(m2.reduction, cd.Reduction.REPORT)
        self.assertGreater(m2.rmse, 0)
        self.assertLess(m2.ssim, 1)
        mse, ssim, psnr = cd.per_image_metrics(x, y)
        self.assertEqual(len(mse), 8)
        self.assertAlmostEqual(math.sqrt(sum(mse) / 8), cd.image_metrics(x, y).rmse)
        n = cd.metrics_normalize(x)
        self.assertEqual((min(n.to_array()), max(n.to_array())), (0.0, 1.0))
        self.assertEqual(cd.enum_name(cd.Reduction.REPORT), "report")
        self.assertFalse(hasattr(cd, "reduction_name"))
        with self.assertRaises(cd.RangeError):
            cd.image_metrics(x, cd.Tensor(x.shape))  # constant images
        with self.assertRaises(cd.ShapeError):
            cd.image_metrics(x, cd.Tensor((8, 1, 28, 27)))

    def test_frechet_and_classes(self):
        rng = cd.Rng(9)
        a = rng.fill_normal(cd.Tensor((50, 4)))
        b = rng.fill_normal(cd.Tensor((40, 4)))
        self.assertAlmostEqual(cd.frechet_distance(a, a), 0.0, places=6)
        fd = cd.frechet_distance(a, b)
        self.assertGreater(fd, 0)
        mu1, c1 = cd.feature_stats(a)
        mu2, c2 = cd.feature_stats(b)
        self.assertEqual((len(mu1), len(c1), len(c1[0])), (4, 4, 4))
        self.assertAlmostEqual(cd.frechet_distance_from_stats(mu1, c1, mu2, c2), fd, places=6)
        with self.assertRaises(cd.ShapeError):
            cd.frechet_distance_from_stats(mu1, c1, mu2[:3], c2)
        with self.assertRaises(cd.ShapeError):
            cd.feature_stats(cd.Tensor((2, 2, 2)))
        probs = cd.Tensor.from_data([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8],
                                     [0.6, 0.3, 0.1]])
        hist, ent, conf = cd.class_histogram(probs)
        self.assertEqual(hist, [2, 1, 1])
        self.assertAlmostEqual(ent, -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
        self.assertAlmostEqual(conf, (0.9 + 0.7 + 0.8 + 0.6) / 4, places=6)
        frac, matches = cd.class_preservation(probs, [0, 1, 0, 0])
        self.assertEqual((frac, matches), (0.75, 3))
        with self.assertRaises(cd.RangeError):
            cd.class_preservation(probs, [0, 1, 0, 7])
        with self.assertRaises(cd.ShapeError):
            cd.class_preservation(probs, [0, 1])


class ClassifierTests(TempDirCase):
    def setUp(self):
        if not cd.has_function("cd_classifier_create"):
            self.skipTest("the loaded libcolddiff does not export the classifier yet")
        super().setUp()

    def test_train_predict_save_load(self):
        ds = slice_dataset(0.2, 3)
        ds.truncate("train", 256)
        rng = cd.Rng(42)
        c = cd.Classifier(rng)
        self.assertEqual((c.num_classes, c.feature_dim), (10, 64))
        self.assertIn("fc2.bias", c.params)
        imgs, labels, _ = ds.batch("train", 0, 32)
        self.assertEqual(c.options(), {"batch": 128, "lr": 1e-3, "max_shift": 1})
        loss = c.train_step(imgs, labels)
        self.assertTrue(math.isfinite(loss))
        seen = []
        self.assertTrue(c.train(ds, 1, rng, batch=64, max_shift=0,
                                on_epoch=lambda cl, e, l: seen.append((e, l))))
        self.assertEqual([e for e, _ in seen], [1])
        self.assertEqual(c.steps, 1 + 4)
        # train() set the options, and they stay set
        self.assertEqual((c["batch"], c["max_shift"], c["lr"]), (64, 0, 1e-3))
        c.train_step(imgs, labels, lr=5e-4)
        self.assertEqual(c["lr"], 5e-4)
        with self.assertRaises(cd.RangeError):
            c.train(ds, 1, rng, batch=0)
        with self.assertRaises(cd.RangeError):
            c.train(ds, 1, rng, max_shift=8)
        self.assertEqual((c["batch"], c["max_shift"]), (64, 0))
        self.assertEqual(c.steps, 6)  # the refused calls trained nothing
        self.assertFalse(c.train(ds, 3, rng, on_epoch=lambda *a: False))
        probs, feats = c.predict(imgs, True, True)
        self.assertEqual((probs.shape, feats.shape), ((32, 10), (32, 64)))
        row = probs.tolist()[0]
        self.assertAlmostEqual(sum(row), 1.0, places=5)
        self.assertEqual(c.probabilities(imgs).to_array(), probs.to_array())
        acc, correct = c.accuracy(ds, "val")
        self.assertEqual(correct, round(acc * ds.count("val")))
        path = self.path("clf.cdm")
        c.save(path)
        back = cd.Classifier.load(path)
        self.assertEqual(back.features(imgs).to_array(), feats.to_array())
        with self.assertRaises(cd.ColddiffError):
            c.predict(imgs, False, False)
        with self.assertRaises(cd.ShapeError):
            c.predict(cd.Tensor((2, 1, 20, 20)))
        with self.assertRaises(cd.RangeError):
            c.train_step(imgs, cd.Tensor((32,), fill=11))
        with self.assertRaises(ZeroDivisionError):
            c.train(ds, 1, rng, on_epoch=lambda *a: 1 / 0)
        with self.assertRaises(TypeError):
            cd.Classifier(None)
        self.assertEqual(cd.Classifier(rng, batch=16, lr=0.01)["batch"], 16)
        self.assertEqual(back.options(), {"batch": 128, "lr": 1e-3, "max_shift": 1})
        if cd.has_function("cd_frechet_distance"):
            self.assertGreaterEqual(cd.frechet_distance(feats, back.features(imgs)), 0.0)
        try:
            shipped = cd.Classifier.load_default()
        except cd.NotFoundError:
            pass  # not shipped in this tree (yet)
        else:
            self.assertEqual(shipped.num_classes, 10)


class DistributedTests(unittest.TestCase):
    def test_two_ranks_in_threads_follow_one_process(self):
        """Two trainers in two threads sum their gradients with a Python
        callback and end where one trainer at the same batch does."""
        import threading
        ds = slice_dataset()
        imgs, _, _ = ds.batch("train", 0, 12)
        barrier = threading.Barrier(2)
        slots = [None, None]
        calls = []

        def make(rank):
            tr = cd.Trainer(tiny_decoder(cd.Rng(5)), cd.Degradation.noise(cd.Schedule.linear(50)))
            tr["bucket"] = 20

            def sum_fn(op, data, count):
                calls.append(op)
                if op != cd.ReduceOp.START:
                    return
                slots[rank] = (ctypes.c_float * count).from_address(data)
                barrier.wait()
                total = [a + b for a, b in zip(slots[0], slots[1])]
                barrier.wait()
                slots[rank][:] = total
            tr.set_distributed(rank, 2, sum_fn)
            return tr

        ranks = [make(0), make(1)]
        self.assertEqual(ranks[1].distributed, (1, 2))
        losses = [[], []]

        def run(rank):
            rng = cd.Rng(3)
            for _ in range(3):
                losses[rank].append(ranks[rank].step(imgs, rng))
        threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        one = cd.Trainer(tiny_decoder(cd.Rng(5)), cd.Degradation.noise(cd.Schedule.linear(50)))
        rng = cd.Rng(3)
        single = [one.step(imgs, rng) for _ in range(3)]
        self.assertEqual(losses[0], losses[1])
        for a, b in zip(losses[0], single):
            self.assertAlmostEqual(a, b, delta=1e-5 * b)
        self.assertIn(cd.ReduceOp.POLL, calls)  # buckets went during backward
        p0, p1, p = (t.decoder.params for t in (ranks[0], ranks[1], one))
        for name in p.names():
            self.assertEqual(p0.get(name), p1.get(name))
            for a, b in zip(p0.get(name), p.get(name)):
                self.assertAlmostEqual(a, b, delta=1e-4 * max(1.0, abs(b)))
        ranks[0].set_distributed(0, 1)
        self.assertEqual(ranks[0].distributed, (0, 1))
        with self.assertRaises(cd.RangeError):
            one.set_distributed(2, 2, lambda op, data, count: None)
        with self.assertRaises(cd.InvalidArgumentError):
            one.set_distributed(0, 2)
        with self.assertRaises(TypeError):
            one.set_distributed(0, 2, 5)


class TrainerTests(TempDirCase):
    @classmethod
    def setUpClass(cls):
        cls.ds = slice_dataset(0.1, 1)

    def make(self, seed=1, T=50):
        rng = cd.Rng(seed)
        tr = cd.Trainer(tiny_decoder(rng), cd.Degradation.noise(cd.Schedule.linear(T)))
        tr["batch"] = 100
        tr["val_batch"] = 100
        return tr, rng

    def test_trainer_borrows_its_decoder_and_degradation(self):
        rng = cd.Rng(1)
        dec = tiny_decoder(rng)
        deg = cd.Degradation.noise(cd.Schedule.linear(10))
        tr = cd.Trainer(dec, deg, batch=16)
        # Both stay the caller's, and are the very objects the trainer uses.
        self.assertFalse(dec.closed or deg.closed)
        self.assertEqual((tr.decoder._p, tr.degradation._p), (dec._p, deg._p))
        self.assertEqual(dec.trained_T, 10)  # the trainer recorded its T
        self.assertTrue(tr.decoder.borrowed)
        imgs, _, _ = self.ds.batch("train", 0, 16)
        before = bytes(dec.params.view())
        tr.step(imgs, rng)
        self.assertNotEqual(bytes(dec.params.view()), before)  # it trains dec itself
        # Closing them first is safe: the trainer keeps them alive.
        dec.close()
        deg.close()
        gc.collect()
        self.assertTrue(math.isfinite(tr.step(imgs, rng)))
        self.assertEqual(tr.degradation.T, 10)
        view = tr.decoder
        n = view.param_count
        tr.close()
        self.assertEqual(view.param_count, n)  # the view keeps the trainer alive
        view.close()
        # A trainer made of temporaries: nothing else holds them.
        tr2 = cd.Trainer(tiny_decoder(rng), cd.Degradation.noise(cd.Schedule.linear(10)))
        gc.collect()
        self.assertTrue(math.isfinite(tr2.step(imgs, rng)))
        # Closing the trainer leaves the decoder usable.
        dec3 = tiny_decoder(rng)
        tr3 = cd.Trainer(dec3, cd.Degradation.noise(cd.Schedule.linear(10)))
        tr3.close()
        self.assertEqual(dec3.forward(imgs, 0.5).shape, imgs.shape)
        # A borrowed view (a loaded trainer's decoder) may train in another.
        path = self.path("t.cdm")
        tr2.save(path)
        loaded = cd.Trainer.load(path)
        tr4 = cd.Trainer(loaded.decoder, loaded.degradation)
        loaded.close()
        gc.collect()
        self.assertTrue(math.isfinite(tr4.step(imgs, rng)))
        with self.assertRaises(TypeError):
            cd.Trainer("cnn", deg)
        with self.assertRaises(cd.ClosedError):
            cd.Trainer(dec, cd.Degradation.noise(cd.Schedule.linear(10)))

    def test_options(self):
        tr, _ = self.make()
        self.assertAlmostEqual(tr.get("lr"), 2e-4)
        tr.set(cd.TrainerOption.LR, 1e-3)
        tr["beta1"] = 0.8
        tr["decoupled"] = True
        opts = tr.options()
        self.assertEqual((opts["lr"], opts["beta1"], opts["decoupled"]), (1e-3, 0.8, True))
        self.assertEqual(set(opts), {tr.option_info(k).name for k in cd.TrainerOption})
        info = cd.Trainer.option_info("beta2")
        self.assertEqual((info.lo, info.hi, info.lo_open, info.hi_open), (0.0, 1.0, False, True))
        with self.assertRaises(cd.RangeError):
            tr["beta1"] = 1.5
        self.assertEqual(tr["beta1"], 0.8)
        with self.assertRaises(cd.NotFiniteError):
            tr["lr"] = float("nan")
        with self.assertRaises(cd.InvalidArgumentError) as cm:
            tr["learning_rate"] = 1
        self.assertIn("lr, beta1", str(cm.exception))  # names the keys there are
        with self.assertRaises(TypeError):
            tr["lr"] = "fast"
        with self.assertRaises(TypeError):
            tr["batch"] = 64.0  # an INT option takes an integer
        # Keyword options at construction, checked like set().
        tr2 = cd.Trainer(tiny_decoder(cd.Rng(1)), cd.Degradation.noise(cd.Schedule.linear(50)),
                         lr=1e-3, batch=64, loss="l1", ema_decay=0.9)
        self.assertEqual((tr2["lr"], tr2["batch"], tr2["loss"], tr2["ema_decay"]),
                         (1e-3, 64, cd.Loss.L1, 0.9))
        with self.assertRaises(cd.RangeError):
            cd.Trainer(tiny_decoder(cd.Rng(1)), cd.Degradation.noise(cd.Schedule.linear(50)),
                       batch=0)
        with self.assertRaises(cd.InvalidArgumentError):
            cd.Trainer(tiny_decoder(cd.Rng(1)), cd.Degradation.noise(cd.Schedule.linear(50)),
                       batchsize=64)
        # configure() sets several, all or none
        with self.assertRaises(cd.RangeError):
            tr.configure(lr=5e-3, batch=32, beta1=2.0)
        self.assertEqual((tr["lr"], tr["batch"], tr["beta1"]), (1e-3, 100, 0.8))
        tr.configure(lr=5e-3, batch=32)
        self.assertEqual((tr["lr"], tr["batch"]), (5e-3, 32))

    def test_copy_ema(self):
        tr, rng = self.make()
        with self.assertRaises(cd.NotFoundError) as cm:
            tr.copy_ema()
        self.assertIn("EMA", str(cm.exception))
        tr["ema_decay"] = 0.5
        tr["lr"] = 1e-2
        imgs, _, _ = self.ds.batch("train", 0, 32)
        for _ in range(2):
            tr.step(imgs, rng)
        path = self.path("ema.cdm")
        tr.save(path)
        before = bytes(tr.decoder.params.view())
        tr.copy_ema()
        after = bytes(tr.decoder.params.view())
        self.assertNotEqual(before, after)
        back = cd.Trainer.load(path)
        back.copy_ema()
        self.assertEqual(bytes(back.decoder.params.view()), after)

    def test_swap_ema(self):
        tr, rng = self.make()
        with self.assertRaises(cd.NotFoundError):
            tr.swap_ema()
        tr["ema_decay"] = 0.5
        tr["lr"] = 1e-2
        imgs, _, _ = self.ds.batch("train", 0, 32)
        for _ in range(2):
            tr.step(imgs, rng)
        raw = bytes(tr.decoder.params.view())
        with tr.ema_weights():
            self.assertTrue(tr.ema_swapped)
            ema = bytes(tr.decoder.params.view())
            with self.assertRaises(cd.StateError):
                tr.step(imgs, rng)
            with self.assertRaises(cd.StateError):
                tr.save(self.path("no.cdm"))
        self.assertFalse(tr.ema_swapped)
        self.assertNotEqual(raw, ema)
        self.assertEqual(bytes(tr.decoder.params.view()), raw)
        tr.copy_ema()
        self.assertEqual(bytes(tr.decoder.params.view()), ema)

    def test_inference_model_files(self):
        tr, rng = self.make()
        tr["ema_decay"] = 0.5
        tr["lr"] = 1e-2
        imgs, _, _ = self.ds.batch("train", 0, 32)
        for _ in range(2):
            tr.step(imgs, rng)
        ckpt, model = self.path("train.cdm"), self.path("model.cdm")
        tr.save(ckpt)
        tr.export(model)
        raw = bytes(tr.decoder.params.view())
        tr.copy_ema()
        ema = bytes(tr.decoder.params.view())
        self.assertNotEqual(raw, ema)
        sched = tr.degradation.schedule_arrays()
        self.assertEqual(len(sched[0]), tr.degradation.T + 1)
        for path in (ckpt, model):
            dec, deg = cd.load_model(path)
            self.assertEqual(bytes(dec.params.view()), ema)  # the EMA weights
            self.assertEqual(deg.T, tr.degradation.T)
            self.assertEqual(dec.trained_T, deg.T)
            self.assertEqual(deg.schedule_arrays(), sched)
        self.assertLess(os.path.getsize(model), os.path.getsize(ckpt) / 2)
        dec, deg = cd.load_model(model)
        cd.save_model(self.path("again.cdm"), dec, deg)
        # Float16 weights: Python's own half rounding (struct "e", to
        # nearest even) is the reference, for the loader and cdm_format.
        import cdm_format
        import struct
        half = self.path("half.cdm")
        cd.save_model(half, dec, deg, weights="float16")
        self.assertLess(os.path.getsize(half), 0.75 * os.path.getsize(self.path("again.cdm")))
        want = [struct.unpack("<e", struct.pack("<e", v))[0] for v in dec.params.view()]
        hdec, hdeg = cd.load_model(half)
        self.assertEqual(list(hdec.params.view()), want)
        self.assertEqual(hdeg.schedule_arrays(), sched)
        self.assertEqual([v for t in cdm_format.read(half).tensors.values() for v in t.data], want)
        with self.assertRaises(cd.InvalidArgumentError) as cm:
            cd.save_model(half, dec, deg, weights="float8")
        self.assertIn("float16", str(cm.exception))
        other = cd.Degradation.noise(cd.Schedule.linear(deg.T + 1))
        with self.assertRaises(cd.InvalidArgumentError) as cm:
            cd.save_model(self.path("bad.cdm"), dec, other)
        self.assertIn(f"trained for T = {deg.T}", str(cm.exception))
        dec.save(self.path("decoder.cdm"))
        with self.assertRaises(cd.FormatError) as cm:
            cd.load_model(self.path("decoder.cdm"))
        self.assertIn("decoder only", str(cm.exception))
        with self.assertRaises(TypeError):
            cd.save_model(model, deg, dec)

    def test_step_eval_save_load(self):
        tr, rng = self.make()
        imgs, _, _ = self.ds.batch("train", 0, 32)
        losses = [tr.step(imgs, rng) for _ in range(3)]
        self.assertTrue(all(math.isfinite(v) for v in losses))
        self.assertEqual(tr.steps, 3)
        val = tr.eval_loss(self.ds, "val", rng)
        self.assertTrue(math.isfinite(val))
        if cd.has_function("cd_trainer_test_loss"):
            mean, se = tr.test_loss(self.ds, "val", cd.Rng(2))
            self.assertTrue(mean > 0 and se > 0)
            self.assertEqual((mean, se), tr.test_loss(self.ds, "val", cd.Rng(2)))
            with self.assertRaises(cd.RangeError):
                tr.test_loss(self.ds, "test", cd.Rng(2))  # the slice has no test split
        path = self.path("t.cdt")
        tr.save(path, rng)
        after = tr.step(imgs, rng)
        rng2 = cd.Rng(999)
        back = cd.Trainer.load(path, rng2)
        self.assertEqual(back.steps, 3)
        self.assertEqual(back["batch"], 100)
        self.assertEqual(back.step(imgs, rng2), after)  # resumes bit for bit
        with self.assertRaises(cd.ShapeError):
            tr.step(cd.Tensor((4, 1, 20, 20)), rng)
        bad = cd.Tensor((2, 1, 28, 28), fill=float("nan"))
        with self.assertRaises(cd.NotFiniteError):
            tr.step(bad, rng)
        with self.assertRaises(TypeError):
            tr.step(imgs, 1)
        with self.assertRaises(cd.NotFoundError):
            cd.Trainer.load(self.path("none.cdt"))

    def test_non_finite_training_raises(self):
        tr, rng = self.make()
        best, last = self.path("nan-best.cdt"), self.path("nan-last.cdt")
        self.assertTrue(tr.fit(self.ds, 1, rng, best, last))
        with open(best, "rb") as f:
            best_bytes = f.read()
        with open(last, "rb") as f:
            last_bytes = f.read()
        weights = tr.decoder.params.view()
        weights[0] = float("nan")
        before = bytes(weights)
        imgs, _, _ = self.ds.batch("train", 0, 32)
        with self.assertRaises(cd.NotFiniteError) as cm:
            tr.step(imgs, rng)
        self.assertIn("the loss of the batch is", str(cm.exception))
        self.assertEqual(tr.steps, 9)
        self.assertEqual(bytes(tr.decoder.params.view()), before)
        with self.assertRaises(cd.NotFiniteError) as cm:
            tr.fit(self.ds, 3, rng, best, last)
        self.assertIn("cd_trainer_fit: epoch 2, batch 1 of 9 (step 10)", str(cm.exception))
        with open(best, "rb") as f:
            self.assertEqual(f.read(), best_bytes)
        with open(last, "rb") as f:
            self.assertEqual(f.read(), last_bytes)

    def test_fit_callback_progress(self):
        tr, rng = self.make()
        seen = []

        def on_epoch(trainer, epoch, train_loss, val_loss):
            self.assertIs(trainer, tr)
            seen.append((epoch, train_loss, val_loss, trainer.progress("epoch")))
        best, last = self.path("best.cdt"), self.path("last.cdt")
        self.assertTrue(tr.fit(self.ds, 2, rng, best, last, on_epoch))
        self.assertEqual([s[0] for s in seen], [1, 2])
        self.assertEqual([s[3] for s in seen], [1.0, 2.0])
        self.assertTrue(all(math.isfinite(s[2]) for s in seen))
        self.assertTrue(os.path.exists(best) and os.path.exists(last))
        prog = tr.progress()
        self.assertEqual((prog["running"], prog["epoch"], prog["batches"]), (0.0, 2.0, 9.0))
        self.assertEqual(tr.steps, 18)
        # continue from last_path for one more epoch: same as going on
        self.assertTrue(cd.Trainer.load(last).fit(self.ds, 3, cd.Rng(0)))
        # on_epoch returning False stops the fit
        self.assertFalse(tr.fit(self.ds, 5, rng, on_epoch=lambda *a: False))
        self.assertEqual(tr.progress("epoch"), 3.0)
        # an exception in on_epoch is raised from fit
        with self.assertRaises(ZeroDivisionError):
            tr.fit(self.ds, 5, rng, on_epoch=lambda *a: 1 / 0)
        # fit cannot be re-entered from its own callback
        with self.assertRaises(cd.StateError):
            tr.fit(self.ds, 6, rng, on_epoch=lambda t, *a: t.fit(self.ds, 9, rng))
        # closing the trainer inside the callback is safe: freed after fit
        tr2, rng2 = self.make()
        tr2.fit(self.ds, 1, rng2, on_epoch=lambda t, *a: t.close())
        self.assertTrue(tr2.closed)
        with self.assertRaises(cd.RangeError):
            tr.fit(self.ds, 0, rng)
        with self.assertRaises(TypeError):
            tr.fit(self.ds, 1, rng, on_epoch=42)
        with self.assertRaises(TypeError):
            tr.fit("mnist", 1, rng)

    def test_request_stop(self):
        tr, rng = self.make()
        tr.request_stop()  # made while no fit runs: stops the next one at once
        self.assertFalse(tr.fit(self.ds, 1, rng))
        self.assertEqual(tr.steps, 0)
        self.assertTrue(tr.fit(self.ds, 1, rng))
        # from another thread while C trains (the GIL is released)
        tr["batch"] = 10
        polled = []

        def stopper():
            deadline = time.time() + 30
            while time.time() < deadline:
                if tr.progress("running") == 1.0 and tr.progress("batch") >= 2:
                    polled.append(tr.progress())
                    tr.request_stop()
                    return
                time.sleep(0.001)
        th = threading.Thread(target=stopper)
        th.start()
        completed = tr.fit(self.ds, 50, rng)
        th.join()
        self.assertFalse(completed)
        self.assertTrue(polled)
        self.assertLess(tr.progress("epoch"), 50)


class SamplerTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ds = slice_dataset()
        cls.x, _ = cls.ds.gather("train", [0, 1], labels=False)

    def test_default_ddim_stays_in_the_data_range(self):
        # An untrained decoder is the worst case: unclipped, DDIM's x0-hat
        # divides its error by sqrt(abar_T) and the chain leaves [-0.5, 0.5].
        rng = cd.Rng(6)
        dec = tiny_decoder(rng)
        s = cd.Sampler("ddim", cd.Degradation.noise(cd.Schedule.linear(1000)))
        self.assertEqual((s["steps"], s["eta"], s["clip"]), (50.0, 1.0, 1.0))
        self.assertEqual((s["clip_lo"], s["clip_hi"]), (-0.5, 0.5))
        s.set_decoder(dec)
        px = s.sample(rng, (8, 1, 28, 28)).to_array()
        self.assertTrue(all(-0.5 <= v <= 0.5 for v in px), (min(px), max(px)))
        s["clip"] = 0
        px = s.sample(rng, (8, 1, 28, 28)).to_array()
        self.assertGreater(max(abs(v) for v in px), 0.5)

    def test_shipped_model(self):
        # The pretrained model that ships with the library: the recorded
        # size and CRC-32 of its weights (as tests/check_model.c), a v
        # predictor, and a grid of the asked shape inside the data range.
        import zlib
        old = os.environ.pop("COLDDIFF_MODEL", None)
        try:
            dec, deg = cd.load_model()
        finally:
            if old is not None:
                os.environ["COLDDIFF_MODEL"] = old
        self.assertEqual(dec.param_count, 919844)
        self.assertEqual(dec.image_shape, (1, 28, 28))
        self.assertEqual(dec.class_count, 10)
        self.assertEqual(zlib.crc32(bytes(dec.params.view())), 0x4fc5f0c3)
        self.assertEqual(dec.prediction, cd.Prediction.V)
        self.assertEqual(dec.trained_T, deg.T)
        s = cd.Sampler("ddim", deg)
        s["steps"] = 3
        s.set_decoder(dec)
        px = s.sample(cd.Rng(2), (2, 1, 28, 28))
        self.assertEqual(px.shape, (2, 1, 28, 28))
        self.assertTrue(all(-0.5 <= v <= 0.5 for v in px.to_array()))
        # It is class-conditional: chosen digits, with guidance.
        s.set_labels([3, 7], guidance=2)
        guided = s.sample(cd.Rng(2), (2, 1, 28, 28)).to_array()
        self.assertTrue(all(-0.5 <= v <= 0.5 for v in guided))
        self.assertNotEqual(guided, px.to_array())

    def test_an_array_as_out_is_named(self):
        s = cd.Sampler("ddpm", cd.Degradation.noise(cd.Schedule.linear(10)))
        s.set_decoder(tiny_decoder(cd.Rng(1)))
        import array
        with self.assertRaisesRegex(TypeError, "expected a Tensor or a shape.*not an array"):
            s.sample(cd.Rng(1), array.array("f", [0.0] * 4))

    def test_progress_and_cancel(self):
        rng = cd.Rng(5)
        dec = tiny_decoder(rng)
        s = cd.Sampler("ddim", cd.Degradation.noise(cd.Schedule.linear(20)))
        s["steps"] = 6
        s.set_decoder(dec)
        seen = []
        s.set_progress(lambda step, steps: seen.append((step, steps)))
        s.sample(rng, (2, 1, 28, 28))
        self.assertEqual(seen, [(i, 6) for i in range(1, 7)])
        s.set_progress(lambda step, steps: step < 2 or False)
        with self.assertRaises(cd.CancelledError) as ctx:
            s.sample(rng, (2, 1, 28, 28))
        self.assertIn("after step 2 of 6", str(ctx.exception))

        def boom(step, steps):
            raise ValueError("stop here")
        s.set_progress(boom)
        with self.assertRaisesRegex(ValueError, "stop here"):
            s.sample(rng, (2, 1, 28, 28))
        s.set_progress(None)
        seen.clear()
        s.sample(rng, (2, 1, 28, 28))
        self.assertEqual(seen, [])
        with self.assertRaises(TypeError):
            s.set_progress(3)

    def test_noise_samplers_with_a_decoder(self):
        rng = cd.Rng(4)
        dec = tiny_decoder(rng)
        deg = cd.Degradation.noise(cd.Schedule.linear(20))
        for kind in ("ddpm", "ddim"):
            s = cd.Sampler(kind, deg)
            self.assertEqual(s.kind.name.lower(), kind)
            with self.assertRaises(cd.StateError):  # no predictor yet
                s.sample(rng, (2, 1, 28, 28))
            s.set_decoder(dec)
            out = s.sample(rng, (2, 1, 28, 28))
            self.assertTrue(all(math.isfinite(v) for v in out.to_array()))
        s = cd.Sampler(cd.SamplerKind.DDIM, deg)
        s["steps"] = 5
        s.set("eta", 0.5)
        s["clip"] = 1
        self.assertEqual(s.options()["steps"], 5)
        self.assertIs(s["clip"], True)
        self.assertEqual(s.option_info("steps")[1:3], ("steps", cd.OptionType.INT))
        self.assertEqual(s.step_times(20), [20, 15, 10, 6, 1])
        with self.assertRaises(cd.RangeError):
            s["steps"] = 21  # above T
        self.assertEqual(s["steps"], 5)
        with self.assertRaises(TypeError):
            s["steps"] = 2.5
        with self.assertRaises(cd.RangeError):
            s["eta"] = 2
        with self.assertRaises(cd.InvalidArgumentError):
            s["speed"] = 1
        with self.assertRaises(cd.UnsupportedError):
            cd.Sampler("cold2", deg)
        with self.assertRaises(cd.InvalidArgumentError):
            cd.Sampler("euler", deg)

    def test_cold_samplers_with_a_predictor(self):
        deg = cd.Degradation.blur(cd.Schedule.constant(10, 1.0))
        calls = []

        def predict(z, tau, out):  # "perfect" denoiser: always the first image
            calls.append((z.shape, tau.tolist()))
            out.copy_from(self.x)
        for kind in ("cold1", "cold2", "direct"):
            s = cd.Sampler(kind, deg)
            s.set_predictor(predict)
            calls.clear()
            res = s.restore(self.x, 10, snap_times=[10, 5, 0], snap_z=True, snap_xhat=True,
                            snap_fwd=True)
            self.assertEqual(res.out.shape, self.x.shape)
            self.assertEqual(len(calls), 1 if kind == "direct" else 10)
            self.assertEqual(calls[0], (self.x.shape, [1.0, 1.0]))
            for snap in res[1:]:
                self.assertEqual(snap.shape, (3,) + self.x.shape)
            ours = [round(v, 4) for v in res.out.to_array()]
            self.assertEqual(ours, [round(v, 4) for v in self.x.to_array()], kind)
        # a predictor may return its prediction instead of filling out
        s = cd.Sampler("direct", deg)
        s.set_predictor(lambda z, tau, out: [0.0] * out.numel)
        res = s.sample(cd.Rng(1), (2, 1, 28, 28))
        self.assertEqual(set(res.to_array()), {0.0})

    def test_predictor_errors_and_lifetime(self):
        deg = cd.Degradation.mask(cd.Schedule.linear(5))
        s = cd.Sampler("cold1", deg)
        kept = []

        def bad(z, tau, out):
            kept.append(out)
            raise KeyError("from the predictor")
        s.set_predictor(bad)
        with self.assertRaises(KeyError) as cm:
            s.restore(self.x, 5)
        self.assertIn("from the predictor", str(cm.exception))
        with self.assertRaises(cd.ClosedError):  # the tensors died with the call
            kept[0].numel
        s.set_predictor(lambda z, tau, out: [1.0])  # wrong length
        with self.assertRaises(cd.ShapeError):
            s.restore(self.x, 5)
        s.set_predictor(lambda z, tau, out: out.fill(float("nan")))
        with self.assertRaises(cd.NotFiniteError):
            s.restore(self.x, 5)
        with self.assertRaises(TypeError):
            s.set_predictor(42)
        # the sampler keeps its degradation alive
        s.set_predictor(lambda z, tau, out: out.copy_from(z))
        deg.close()
        self.assertEqual(s.restore(self.x, 3).out.shape, self.x.shape)
        # closing the sampler inside its own predictor is safe
        s.set_predictor(lambda z, tau, out: s.close())
        s.restore(self.x, 3)
        self.assertTrue(s.closed)
        s2 = cd.Sampler("cold1", cd.Degradation.mask(cd.Schedule.linear(5)))
        s2.set_predictor(None)
        with self.assertRaises(cd.StateError):
            s2.restore(self.x, 2)

    def test_bad_use(self):
        deg = cd.Degradation.blur(cd.Schedule.constant(10, 1.0))
        s = cd.Sampler("cold2", deg)
        s.set_predictor(lambda z, tau, out: out.copy_from(z))
        with self.assertRaises(cd.RangeError):
            s.restore(self.x, 11)
        with self.assertRaises(cd.RangeError):
            s.restore(self.x, 5, snap_times=[6], snap_z=True)
        with self.assertRaises(cd.InvalidArgumentError):
            s.restore(self.x, 5, snap_z=True)
        with self.assertRaises(cd.ShapeError):
            s.restore(self.x, 5, snap_times=[1], snap_z=cd.Tensor((2, 2, 1, 28, 28)))
        with self.assertRaises(cd.InvalidArgumentError):
            s.restore(self.x, 5, out=self.x)
        with self.assertRaises(TypeError):
            s.restore([1, 2], 5)
        with self.assertRaises(TypeError):
            s.sample(cd.Rng(1), None)
        with self.assertRaises(TypeError):
            cd.Sampler("cold2", "blur")
        with self.assertRaises(TypeError):
            s.set_decoder(lambda z: z)
        s.close()
        with self.assertRaises(cd.ClosedError):
            s.sample(cd.Rng(1), (1, 1, 28, 28))


class OptionTests(unittest.TestCase):
    """cd_*_option_info against the binding's key enums, and the generic
    set/get by key or name on every configurable object."""
    TABLES = {cd.DecoderConfig: ("cd_decoder_config", cd.DecoderOption),
              cd.Sampler: ("cd_sampler", cd.SamplerOption),
              cd.Trainer: ("cd_trainer", cd.TrainerOption),
              cd.Classifier: ("cd_classifier", cd.ClassifierOption)}

    @classmethod
    def setUpClass(cls):
        cls.rng = cd.Rng(3)
        cls.deg = cd.Degradation.noise(cd.Schedule.linear(100))

    def make(self, cls):
        """A new object of a configurable class, with its defaults."""
        if cls is cd.DecoderConfig:
            return cd.DecoderConfig("cnn")
        if cls is cd.Sampler:
            return cd.Sampler("ddim", self.deg)
        if cls is cd.Trainer:
            return cd.Trainer(tiny_decoder(self.rng), self.deg)
        return cd.Classifier(self.rng)

    def test_the_library_knows_exactly_the_enums_keys(self):
        lib = cd._L()
        for cls, (prefix, keys) in self.TABLES.items():
            self.assertEqual(cls.option_keys(), list(keys))
            info_fn = getattr(lib, prefix + "_option_info")
            known = set()
            for k in list(range(-2, 64)) + list(range(1000, 1064)):
                info = cd._OptionInfoC()
                st = info_fn(k, ctypes.byref(info))
                if st == 0:
                    known.add(k)
                else:
                    self.assertEqual(st, cd.Status.INVALID_ARGUMENT, (prefix, k))
            self.assertEqual(known, {int(k) for k in keys}, prefix)
            self.assertEqual(info_fn(0, None), cd.Status.INVALID_ARGUMENT)
            obj = self.make(cls)
            for k in keys:
                info = cls.option_info(k)
                # The library's name is the member's, in lower case.
                self.assertEqual(info.name.upper(), k.name, prefix)
                self.assertIs(info.key, k)
                self.assertIsInstance(info.type, cd.OptionType)
                self.assertLessEqual(info.lo, info.hi)
                if info.type == cd.OptionType.CHOICE:
                    self.assertIn(info.choices, cd.NAMED_ENUMS.values())
                    self.assertEqual((info.lo, info.hi),
                                     (0, len(cd._NAMED_CLASSES[info.choices]) - 1))
                else:
                    self.assertIsNone(info.choices, k)
                if info.type == cd.OptionType.BOOL:
                    self.assertEqual((info.lo, info.hi), (0, 1))
                    self.assertIn(info.default_value, (0, 1))
                # A new object holds the default (a list: its first entry).
                got = obj.get(k)
                if info.type == cd.OptionType.INT_LIST:
                    got = got[0]
                self.assertEqual(got, info.default_value, (prefix, k.name))
                # and takes it back: get, then set, through the generic calls
                obj.set(k, obj.get(k))

    def test_option_info_of_some_keys(self):
        T = cd.OptionType
        cases = [
            (cd.Trainer, "lr", T.REAL, None, 2e-4, (0.0, True)),
            (cd.Trainer, "batch", T.INT, None, 128, (1, False)),
            (cd.Trainer, "loss", T.CHOICE, cd.NamedEnum.LOSS, cd.Loss.MSE, (0, False)),
            (cd.Trainer, "prediction", T.CHOICE, cd.NamedEnum.PREDICTION, 0, (0, False)),
            (cd.Trainer, "decoupled", T.BOOL, None, 0, (0, False)),
            (cd.Trainer, "lr_decay", T.INT, None, 0, (0, False)),
            (cd.Sampler, "steps", T.INT, None, 50, (1, False)),
            (cd.Sampler, "eta", T.REAL, None, 1.0, (0.0, False)),
            (cd.Sampler, "clip", T.BOOL, None, 1, (0, False)),
            (cd.Sampler, "clip_lo", T.REAL, None, -0.5, None),
            (cd.Sampler, "posterior_variance", T.BOOL, None, 0, (0, False)),
            (cd.DecoderConfig, "hidden", T.INT_LIST, None, 16, None),
            (cd.DecoderConfig, "dim_mults", T.INT_LIST, None, 1, None),
            (cd.DecoderConfig, "kernel", T.INT, None, 7, None),
            (cd.Classifier, "batch", T.INT, None, 128, (1, False)),
            (cd.Classifier, "lr", T.REAL, None, 1e-3, (0.0, True)),
            (cd.Classifier, "max_shift", T.INT, None, 1, (0, False)),
        ]
        for cls, name, typ, choices, default, lo in cases:
            info = cls.option_info(name)
            self.assertEqual((info.name, info.type, info.choices, info.default_value),
                             (name, typ, choices, default), (cls.__name__, name))
            self.assertIsInstance(info.default_value, float if typ == T.REAL else int)
            if lo is not None:
                self.assertEqual((info.lo, info.lo_open), lo, (cls.__name__, name))
        self.assertEqual(cd.Classifier.option_info("max_shift").hi, 7)
        self.assertEqual(cd.Classifier.option_info("batch").hi, cd.CLASSIFIER_MAX_BATCH)
        self.assertIs(cd.Trainer.option_info(cd.TrainerOption.LR_DECAY).key,
                      cd.TrainerOption.LR_DECAY)
        self.assertEqual(int(cd.TrainerOption.LR_DECAY), cd.OPTION_EXPERIMENTAL_FIRST)
        # by member, number, library name or member name: the same key
        for key in (cd.SamplerOption.CLIP_LO, 4, "clip_lo", "CLIP_LO", "clip-lo"):
            self.assertIs(cd.Sampler.option_info(key).key, cd.SamplerOption.CLIP_LO)
        with self.assertRaises(cd.InvalidArgumentError):
            cd.Sampler.option_info("speed")
        with self.assertRaises(cd.InvalidArgumentError):
            cd.Trainer.option_info(10)  # the old LR_DECAY number is no key now
        with self.assertRaises(TypeError):
            cd.Trainer.option_info(1.5)

    def test_typed_calls_refuse_a_key_of_the_other_type(self):
        lib = cd._L()
        tr = self.make(cd.Trainer)
        # the C calls themselves
        st = lib.cd_trainer_set_int(tr._p, int(cd.TrainerOption.LR), 1)
        self.assertEqual(st, cd.Status.INVALID_ARGUMENT)
        self.assertIn("'lr'", cd.last_error())
        self.assertIn("_set_real", cd.last_error())
        v = ctypes.c_double()
        self.assertEqual(lib.cd_trainer_get_real(tr._p, int(cd.TrainerOption.BATCH),
                                                 ctypes.byref(v)), cd.Status.INVALID_ARGUMENT)
        self.assertIn("_get_int", cd.last_error())
        # the binding's typed calls pass them on as they are
        s, c, cfg = self.make(cd.Sampler), self.make(cd.Classifier), self.make(cd.DecoderConfig)
        for obj, call, key, value in [
                (tr, "set_int", "lr", 1), (tr, "set_real", "batch", 64.0),
                (tr, "set_real", "loss", 1.0), (tr, "get_real", "decoupled", None),
                (tr, "get_int", "ema_decay", None),
                (s, "set_real", "steps", 5.0), (s, "set_int", "eta", 0),
                (c, "set_int", "lr", 1), (c, "get_real", "max_shift", None),
                (cfg, "get_int", "hidden", None), (cfg, "set_real", "kernel", 3.0),
                (cfg, "get_real", "dim", None)]:
            before = obj.get(key)
            args = (key,) if value is None else (key, value)
            with self.assertRaises(cd.InvalidArgumentError, msg=(call, key)) as cm:
                getattr(obj, call)(*args)
            self.assertIn(f"'{key}'", str(cm.exception))
            self.assertEqual(obj.get(key), before)  # a failed set changes nothing
        # An integer for a list key, in a child process: a library that
        # writes it through a NULL slot must fail this test, not end the run.
        r = run_python(PRELUDE + "import colddiff as cd\n"
                       "cfg = cd.DecoderConfig('cnn')\n"
                       "try:\n    cfg.set_int('hidden', 8)\n"
                       "except cd.InvalidArgumentError as e:\n    print('refused:', e)\n"
                       "print(cfg['hidden'])\n")
        self.assertEqual(r.returncode, 0, f"set_int on a list key: {r.returncode} {r.stderr}")
        self.assertIn("refused: ", r.stdout)
        self.assertIn("'hidden'", r.stdout)
        self.assertIn("(16, 32, 32, 16)", r.stdout)
        # and the matching ones work
        tr.set_real("lr", 3e-4)
        tr.set_int("batch", 100)
        self.assertEqual((tr.get_real("lr"), tr.get_int("batch")), (3e-4, 100))
        with self.assertRaises(cd.NotFiniteError):
            tr.set_real("lr", float("inf"))
        with self.assertRaises(cd.RangeError):
            tr.set_int("batch", 0)

    def test_values_by_type(self):
        tr = self.make(cd.Trainer)
        self.assertIs(tr["loss"], cd.Loss.MSE)
        tr["loss"] = "l1"
        self.assertIs(tr["loss"], cd.Loss.L1)
        tr["loss"] = 0
        self.assertIs(tr.get(cd.TrainerOption.LOSS), cd.Loss.MSE)
        tr["prediction"] = cd.Prediction.V
        self.assertIs(tr["prediction"], cd.Prediction.V)
        with self.assertRaises(TypeError):
            tr["loss"] = cd.Prediction.V  # a value of another enumeration
        with self.assertRaises(cd.InvalidArgumentError):
            tr["loss"] = "huber"
        with self.assertRaises(cd.RangeError):
            tr["loss"] = 2
        self.assertIs(tr["decoupled"], False)
        tr["decoupled"] = 1
        self.assertIs(tr["decoupled"], True)
        with self.assertRaises(cd.RangeError):
            tr["decoupled"] = 2
        self.assertIsInstance(tr["val_batch"], int)
        self.assertIsInstance(tr["beta2"], float)
        tr["beta2"] = 0  # an int is a fine real
        self.assertEqual(tr["beta2"], 0.0)
        tr["lr_decay"] = 500  # experimental, through the same calls
        self.assertEqual(tr[cd.TrainerOption.LR_DECAY], 500)
        cfg = self.make(cd.DecoderConfig)
        self.assertIsInstance(cfg["hidden"], tuple)
        with self.assertRaises(cd.ColddiffError):
            cfg["hidden"] = list(range(1, 10))  # 9 entries: at most 8
        self.assertEqual(cfg["hidden"], (16, 32, 32, 16))
        with self.assertRaises(TypeError):
            cfg["hidden"] = 8

    def test_sampler_options(self):
        s = cd.Sampler("ddim", self.deg, steps=10, eta=0, clip=False)
        self.assertEqual((s["steps"], s["eta"], s["clip"]), (10, 0.0, False))
        self.assertEqual(cd.Sampler("ddim", cd.Degradation.noise(cd.Schedule.linear(20)))
                         ["steps"], 20)  # min(50, T)
        with self.assertRaises(cd.RangeError):
            cd.Sampler("ddim", self.deg, steps=101)
        s.configure(clip_lo=-1, clip_hi=1)
        self.assertEqual((s["clip_lo"], s["clip_hi"]), (-1.0, 1.0))


class RoundTrip(TempDirCase):
    """Train a tiny CNN on the MNIST slice, save, load, sample."""

    def test_train_save_load_sample(self):
        ds = slice_dataset(0.1, 7)
        rng = cd.Rng(7)
        tr = cd.Trainer(tiny_decoder(rng), cd.Degradation.noise(cd.Schedule.linear(100)))
        tr["lr"] = 2e-3
        tr["batch"] = 50
        tr["val_batch"] = 100
        first = tr.eval_loss(ds, "val", cd.Rng(1))
        losses = []
        self.assertTrue(tr.fit(ds, 2, rng, on_epoch=lambda t, e, l, v: losses.append(v)))
        self.assertLess(losses[-1], first)  # it learned something
        ckpt, model = self.path("run.cdt"), self.path("model.cdm")
        tr.save(ckpt, rng)
        tr.decoder.save(model)
        back = cd.Trainer.load(ckpt)
        dec = cd.Decoder.load(model)
        for name in dec.params:
            self.assertEqual(dec.params[name], tr.decoder.params[name])
            self.assertEqual(back.decoder.params[name], dec.params[name])
        self.assertEqual(back.degradation.T, 100)
        samples = []
        for source in (tr.decoder, dec):
            s = cd.Sampler("ddim", back.degradation)
            s["steps"] = 10
            s.set_decoder(source)
            samples.append(s.sample(cd.Rng(3), (8, 1, 28, 28)))
        self.assertEqual(samples[0].to_array(), samples[1].to_array())
        grid = self.path("samples.png")
        cd.write_image_grid(grid, samples[0], columns=4, pixel_map="percentile")
        self.assertTrue(os.path.getsize(grid) > 0)
        tr.close()
        back.close()


@unittest.skipIf(np is None, "numpy is not importable: numpy interop not tested")
class EvalCommandTests(TempDirCase):
    """colddiff eval's FD sets, recomputed through the binding."""

    def test_fd_compares_with_images_spread_over_the_split(self):
        cli = os.environ.get("COLDDIFF_CLI")
        if not cli:
            self.skipTest("COLDDIFF_CLI is not set: the command line was not built")
        import json
        out = self.path("eval.json")
        m = 50  # the slice's 1,000 test images: one in 20, and 9 floor sets
        r = subprocess.run([cli, "eval", "--data", DATA, "--n", "2", "--fd-samples", str(m),
                            "--steps", "2", "--threads", "1", "--json", out],
                           capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.load(open(out))
        self.assertIn("one in 20", r.stdout)
        self.assertEqual(got["fd_floor_sets"], 9)
        ds = cd.Dataset.load_idx(IMAGES, LABELS, IMAGES, LABELS)  # as the command reads it
        clf = cd.Classifier.load_default()

        def feats(offset):
            images, _ = ds.gather("test", [i * 20 + offset for i in range(m)], labels=False)
            return clf.features(images)

        ref = feats(0)
        floors = [cd.frechet_distance(feats(2 * j), ref) for j in range(1, 10)]
        self.assertAlmostEqual(got["fd_floor"], sum(floors) / 9, delta=1e-6 * got["fd_floor"])
        # The slice's first 50 images are not the reference: a block scores
        # another floor.
        first, _ = ds.gather("test", list(range(m)), labels=False)
        self.assertNotAlmostEqual(cd.frechet_distance(clf.features(first), ref), floors[0],
                                  delta=1e-3)


class NumpyInterop(unittest.TestCase):
    def test_zero_copy_views(self):
        t = cd.Tensor((2, 3))
        a = t.numpy()
        self.assertEqual((a.shape, a.dtype), ((2, 3), np.float32))
        a[1, 2] = 7
        self.assertEqual(t.tolist()[1][2], 7)
        t.fill(1)
        self.assertEqual(a.sum(), 6)
        b = np.asarray(t)
        self.assertTrue(np.shares_memory(a, b))
        self.assertEqual(np.array(t, dtype=np.float64).dtype, np.float64)
        t.close()
        self.assertEqual(a.sum(), 6)  # the array keeps the memory alive

    def test_arrays_in(self):
        x = np.arange(12, dtype=np.float64).reshape(3, 4)
        t = cd.Tensor.from_numpy(x)
        self.assertEqual(t.shape, (3, 4))
        np.testing.assert_array_equal(t.numpy(), x)
        t.copy_from(x.T.copy())  # any layout of the right size
        t.copy_from(np.ones((2, 6), dtype=np.int32))
        self.assertEqual(t.numpy().sum(), 12)
        t2 = cd.Tensor.from_data(x[:, ::2])  # non-contiguous: copied
        np.testing.assert_array_equal(t2.numpy(), x[:, ::2])
        with self.assertRaises(cd.ShapeError):
            t.copy_from(np.zeros(5))
        with self.assertRaises(TypeError):
            t.copy_from(np.array(["a"] * 12))
        with self.assertRaises(TypeError):
            cd.Tensor(np.float32(2.0))
        self.assertEqual(cd.Tensor(np.int64(3)).shape, (3,))
        self.assertEqual(cd.Tensor((np.int32(2), 3)).shape, (2, 3))

    def test_an_image_array_as_out_is_named(self):
        s = cd.Sampler("ddpm", cd.Degradation.noise(cd.Schedule.linear(10)))
        s.set_decoder(tiny_decoder(cd.Rng(1)))
        with self.assertRaisesRegex(TypeError, "expected a Tensor or a shape.*not an array"):
            s.sample(cd.Rng(1), np.zeros((2, 1, 28, 28), dtype=np.float32))
        # An integer array is still a shape.
        self.assertEqual(s.sample(cd.Rng(1), np.array([2, 1, 28, 28])).shape, (2, 1, 28, 28))

    def test_params_and_predictor(self):
        rng = cd.Rng(2)
        dec = tiny_decoder(rng)
        name = dec.params.names()[0]
        w = dec.params.numpy(name)
        self.assertEqual(w.shape, dec.params.shape(name))
        w[...] = 0.25
        self.assertEqual(set(dec.params[name]), {0.25})
        deg = cd.Degradation.blur(cd.Schedule.constant(6, 1.0))
        s = cd.Sampler("cold2", deg)
        s.set_predictor(lambda z, tau, out: np.copyto(out.numpy(), z.numpy() * 0.5))
        x = rng.fill_normal(cd.Tensor((2, 1, 28, 28)))
        self.assertEqual(s.restore(x, 6).out.shape, (2, 1, 28, 28))
        s = cd.Sampler("direct", deg)
        s.set_predictor(lambda z, tau, out: np.zeros(z.shape, dtype=np.float32))
        self.assertEqual(np.abs(s.restore(x, 6).out.numpy()).max(), 0)
        mu = np.zeros(3)
        if cd.has_function("cd_frechet_distance_from_stats"):
            self.assertAlmostEqual(cd.frechet_distance_from_stats(mu, np.eye(3), mu + 1,
                                                                  np.eye(3)), 3.0, places=6)
        self.assertEqual(cd.Rng(5).int_range(3, 0, 0).tolist(), [0, 0, 0])
        ds = slice_dataset()
        imgs, labels = ds.gather("train", np.array([3, 1, 2]))
        self.assertEqual(imgs.numpy().shape, (3, 1, 28, 28))


def main(argv):
    want_numpy = "--numpy" in argv
    no_numpy = "--no-numpy" in argv
    argv = [a for a in argv if a not in ("--numpy", "--no-numpy")]
    loader = unittest.TestLoader()
    if want_numpy:
        if np is None:
            print("test_binding.py --numpy: skipped: numpy is not importable by "
                  f"{sys.executable}")
            return 77
        suite = loader.loadTestsFromTestCase(NumpyInterop)
    elif len(argv) > 1:
        suite = loader.loadTestsFromNames(argv[1:], sys.modules[__name__])
    else:
        suite = loader.loadTestsFromModule(sys.modules[__name__])
        if no_numpy:
            suite = unittest.TestSuite(
                t for t in _flatten(suite) if not isinstance(t, NumpyInterop))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if result.skipped:
        print("skipped:", *(f"\n  {t.id()}: {why}" for t, why in result.skipped))
    return 0 if result.wasSuccessful() else 1


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


if __name__ == "__main__":
    sys.exit(main(sys.argv))
