"""ctypes smoke test: load libcolddiff, make a tensor and an RNG, draw
normals and read them back. Standard library only."""
import ctypes
import math
import os
import sys
import unittest

LIB_PATH = os.environ.get("COLDDIFF_LIBRARY", "libcolddiff.so.0")


def load():
    lib = ctypes.CDLL(LIB_PATH)
    p, i32, i64, u64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64
    sigs = {
        "cd_version_string": (ctypes.c_char_p, []),
        "cd_abi_version": (i32, []),
        "cd_last_error": (ctypes.c_char_p, []),
        "cd_tensor_create": (ctypes.c_int, [ctypes.POINTER(p), i64, ctypes.POINTER(i64)]),
        "cd_tensor_free": (None, [p]),
        "cd_tensor_numel": (i64, [p]),
        "cd_tensor_copy_to": (ctypes.c_int, [p, ctypes.POINTER(ctypes.c_float), i64]),
        "cd_rng_create": (ctypes.c_int, [ctypes.POINTER(p), u64]),
        "cd_rng_free": (None, [p]),
        "cd_rng_normal_tensor": (ctypes.c_int, [p, p]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class Smoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lib = load()

    def test_version(self):
        self.assertEqual(self.lib.cd_abi_version(), 0)
        self.assertRegex(self.lib.cd_version_string().decode(), r"^\d+\.\d+\.\d+$")

    def draw(self, seed, n):
        lib = self.lib
        t, r = ctypes.c_void_p(), ctypes.c_void_p()
        shape = (ctypes.c_int64 * 1)(n)
        self.assertEqual(lib.cd_tensor_create(ctypes.byref(t), 1, shape), 0)
        try:
            self.assertEqual(lib.cd_rng_create(ctypes.byref(r), seed), 0)
            self.assertEqual(lib.cd_rng_normal_tensor(r, t), 0)
            self.assertEqual(lib.cd_tensor_numel(t), n)
            out = (ctypes.c_float * n)()
            self.assertEqual(lib.cd_tensor_copy_to(t, out, n), 0)
            return list(out)
        finally:
            lib.cd_rng_free(r)
            lib.cd_tensor_free(t)

    def test_normals_round_trip(self):
        xs = self.draw(42, 20000)
        self.assertEqual(xs, self.draw(42, 20000))
        self.assertNotEqual(xs, self.draw(43, 20000))
        mean = sum(xs) / len(xs)
        var = sum((x - mean) ** 2 for x in xs) / len(xs)
        self.assertLess(abs(mean), 0.04)  # 5 standard errors
        self.assertLess(abs(var - 1.0), 0.05)
        self.assertTrue(all(math.isfinite(x) for x in xs))

    def test_errors_are_statuses(self):
        lib = self.lib
        t = ctypes.c_void_p()
        shape = (ctypes.c_int64 * 2)(3, 0)
        self.assertEqual(lib.cd_tensor_create(ctypes.byref(t), 2, shape), -3)
        self.assertIn(b"shape[1]", lib.cd_last_error())
        self.assertIsNone(t.value)
        lib.cd_tensor_free(None)


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False).result.wasSuccessful() else 1)
