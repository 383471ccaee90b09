"""colddiff.py - a ctypes binding of libcolddiff's public C API (colddiff.h).

One file, standard library only. numpy is optional: when it imports,
Tensor.numpy() and numpy.asarray(tensor) give zero-copy array views.

    import colddiff as cd
    ds = cd.Dataset.load_idx("tests/data/t10k-images-idx3-ubyte.gz",
                             "tests/data/t10k-labels-idx1-ubyte.gz")
    ds.split(0.1, seed=42)
    rng = cd.Rng(42)
    dec = cd.Decoder("cnn", rng, hidden=(8, 8), time_hidden=32)
    deg = cd.Degradation.noise(cd.Schedule.linear(200))
    tr = cd.Trainer(dec, deg, lr=1e-3, batch=64)   # borrows dec and deg
    tr.fit(ds, epochs=1, rng=rng)
    s = cd.Sampler("ddim", deg, steps=20)
    s.set_decoder(dec)
    images = s.sample(rng, (16, 1, 28, 28))

See docs/python.md for the whole story. The rules, in short:

* Errors: every failing C call raises a ColddiffError subclass chosen by its
  cd_status (ShapeError, RangeError, ...; each also derives from the matching
  built-in exception, e.g. ValueError), carrying .status and cd_last_error()
  as its message. Wrong argument types raise TypeError before C is called.
* Lifetime: close() (or a with block) frees an object at once, unless another
  live object still needs it (a Sampler its Degradation and Decoder, a
  Trainer its Decoder and Degradation, a Params or memoryview its Decoder
  or Tensor, a borrowed view its owner):
  then the memory goes when the last of those is closed or collected. A
  closed object raises ClosedError; nothing can reach freed memory.
* Trainer(decoder, degradation) borrows both, as cd_trainer_create does: the
  trainer keeps them alive (closing the Python objects early is safe) and
  they stay yours to use. A loaded Trainer owns its own; trainer.decoder and
  trainer.degradation are borrowed views that keep the trainer alive.
* Options: every configurable object (DecoderConfig, Sampler, Trainer,
  Classifier) has set(key, value), get(key), obj[key], options() and
  option_info(key), by enum member, number or name ("lr", "clip_lo"); the
  option's type (cd_*_option_info) picks the typed C call. Constructors take
  options as keywords: Trainer(dec, deg, lr=1e-3, batch=64).
* Ctrl-C during fit() (or a chain driven by a Python predictor) stops the C
  loop cleanly and raises KeyboardInterrupt; those calls run C in a helper
  thread when made from the main thread.
* Loading: $COLDDIFF_LIBRARY, else the library of the installation this
  module belongs to (colddiff-library.txt beside it), else
  build/lib/libcolddiff.so in the module's or the working directory's
  ancestors, else the system's libcolddiff. The
  library's ABI version must equal ABI_VERSION.
"""
import array
import collections
import contextlib
import ctypes
import ctypes.util
import enum
import math
import operator
import os
import sys
import threading
import weakref

__all__ = [
    "ABI_VERSION", "ColddiffError", "LibraryError", "ClosedError",
    "InvalidArgumentError", "OutOfMemoryError", "ShapeError", "SizeOverflowError",
    "RangeError", "NotFiniteError", "IOFailure", "NotFoundError", "FormatError",
    "ChecksumError", "VersionError", "StateError", "UnsupportedError",
    "CancelledError", "InternalError",
    "Status", "Split", "Prediction", "WeightFormat", "DecoderKind", "DecoderOption", "ScheduleKind",
    "DegradationKind", "Padding", "Target", "Loss", "TrainerOption", "ProgressKey",
    "SamplerKind", "SamplerOption", "ClassifierOption", "OptionType", "OptionInfo",
    "OPTION_EXPERIMENTAL_FIRST",
    "PixelMap", "Reduction", "NamedEnum", "NAMED_ENUMS", "enum_name", "enum_parse",
    "Tensor", "Rng", "Params", "DecoderConfig", "Decoder", "Schedule", "Degradation",
    "Prior", "Trainer", "Sampler", "Restoration", "Dataset", "Classifier", "ImageMetrics",
    "load_library", "library_path", "has_function", "version", "abi_version", "status_string",
    "last_error", "clear_error", "set_num_threads", "get_num_threads",
    "write_png_gray", "write_image_grid",
    "metrics_normalize", "image_metrics", "per_image_metrics",
    "feature_stats", "frechet_distance", "frechet_distance_from_stats",
    "class_histogram", "class_preservation", "save_model", "load_model",
]

#: The ABI generation this binding is written for (CD_ABI_VERSION).
ABI_VERSION = 0
#: The oldest library release whose API this binding covers.
MIN_VERSION = (0, 1)
TENSOR_MAX_RANK = 8
RNG_STATE_WORDS = 4
PARAMS_MAX_NAME = 127
MAX_THREADS = 256
METRICS_REPORT_BATCH = 512
METRICS_MIN_SIZE = 11
FD_MAX_DIM = 16384
CLASSIFIER_MAX_BATCH = 65536
#: Option keys from here on are experimental (colddiff_experimental.h).
OPTION_EXPERIMENTAL_FIRST = 1000

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_U64_MAX = (1 << 64) - 1

try:  # optional
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the host
    _np = None


# --------------------------------------------------------------------------
# Enumerations (values fixed by colddiff.h)
#
# The *_INVALID = -1 members of the C enums (what a getter returns on error)
# have no Python member: the binding raises the error instead.
# --------------------------------------------------------------------------

class Status(enum.IntEnum):
    OK = 0
    INVALID_ARGUMENT = -1
    OUT_OF_MEMORY = -2
    SHAPE = -3
    OVERFLOW = -4
    RANGE = -5
    NOT_FINITE = -6
    IO = -7
    NOT_FOUND = -8
    FORMAT = -9
    CHECKSUM = -10
    VERSION = -11
    STATE = -12
    UNSUPPORTED = -13
    CANCELLED = -14
    INTERNAL = -15


class Split(enum.IntEnum):
    TRAIN = 0
    VAL = 1
    TEST = 2


class Prediction(enum.IntEnum):
    NOISE = 0
    X0 = 1
    V = 2


class WeightFormat(enum.IntEnum):
    FLOAT32 = 0
    FLOAT16 = 1


class DecoderKind(enum.IntEnum):
    CNN = 0
    UNET = 1


class DecoderOption(enum.IntEnum):
    """Keys of a decoder configuration (cd_decoder_option)."""
    CHANNELS = 0
    HEIGHT = 1
    WIDTH = 2
    HIDDEN = 3          # list
    KERNEL = 4
    TIME_FREQS = 5
    TIME_HIDDEN = 6
    TIME_LAYERS = 7
    DIM = 8
    DIM_MULTS = 9       # list
    HEADS = 10
    HEAD_DIM = 11
    CONVNEXT_MULT = 12
    CLASSES = 13


class ScheduleKind(enum.IntEnum):
    LINEAR = 0
    CONSTANT = 1
    COSINE = 2
    CUSTOM = 3
    CONSTANT_REPORT = 4
    COSINE_REPORT = 5
    ARRAYS = 6
    LINEAR_REPORT = 7


class DegradationKind(enum.IntEnum):
    NOISE = 0
    BLUR = 1
    PIXELATE = 2
    MASK = 3
    FADE = 4


class Padding(enum.IntEnum):
    REFLECT = 0
    CIRCULAR = 1


class Target(enum.IntEnum):
    NOISE = 0
    IMAGE = 1


class Loss(enum.IntEnum):
    """What a trainer minimises (cd_loss; TrainerOption.LOSS)."""
    MSE = 0
    L1 = 1


class TrainerOption(enum.IntEnum):
    """Trainer options (cd_trainer_option). LR_DECAY is experimental
    (colddiff_experimental.h: it may change or go in any release)."""
    LR = 0
    BETA1 = 1
    BETA2 = 2
    EPS = 3
    WEIGHT_DECAY = 4
    DECOUPLED = 5
    CLIP_NORM = 6
    EMA_DECAY = 7
    LR_WARMUP = 8
    EMA_WARMUP = 9
    T_MAX = 16
    T_PER_BATCH = 17
    LOSS = 18
    VAL_BATCH = 19
    BATCH = 20
    PREDICTION = 21
    LABEL_DROPOUT = 22
    BUCKET = 23
    LR_DECAY = 1000     # experimental


class ReduceOp(enum.IntEnum):
    """What a data-parallel trainer asks of its gradient sum (cd_reduce_op)."""
    START = 0
    POLL = 1
    WAIT = 2


class ProgressKey(enum.IntEnum):
    RUNNING = 0
    EPOCH = 1
    EPOCHS = 2
    BATCH = 3
    BATCHES = 4
    TRAIN_LOSS = 5
    VAL_LOSS = 6
    BEST_VAL_LOSS = 7
    IMAGES_PER_SEC = 8
    ETA_SEC = 9
    PHASE = 10
    VAL_BATCH = 11
    VAL_BATCHES = 12


class SamplerKind(enum.IntEnum):
    DDPM = 0
    DDIM = 1
    COLD1 = 2
    COLD2 = 3
    DIRECT = 4


class SamplerOption(enum.IntEnum):
    """Sampler options (cd_sampler_option)."""
    STEPS = 0
    ETA = 1
    POSTERIOR_VARIANCE = 2
    CLIP = 3
    CLIP_LO = 4
    CLIP_HI = 5
    GUIDANCE = 6
    REDERIVE = 7


class ClassifierOption(enum.IntEnum):
    """Classifier training options (cd_classifier_option)."""
    BATCH = 0
    LR = 1
    MAX_SHIFT = 2


class OptionType(enum.IntEnum):
    """What kind of value an option holds (cd_option_type)."""
    INT = 0
    BOOL = 1
    CHOICE = 2
    REAL = 3
    INT_LIST = 4


class PixelMap(enum.IntEnum):
    RANGE = 0
    PERCENTILE = 1


class Reduction(enum.IntEnum):
    PER_IMAGE = 0
    REPORT = 1


class NamedEnum(enum.IntEnum):
    """The enumerations whose values the library names (cd_enum)."""
    DECODER_KIND = 0
    SCHEDULE_KIND = 1
    DEGRADATION_KIND = 2
    PADDING = 3
    TARGET = 4
    PREDICTION = 5
    SAMPLER_KIND = 6
    SPLIT = 7
    METRIC_REDUCTION = 8
    PIXEL_MAP = 9
    LOSS = 10


#: Each Python enum class with names in the library, and its cd_enum.
NAMED_ENUMS = {
    DecoderKind: NamedEnum.DECODER_KIND, ScheduleKind: NamedEnum.SCHEDULE_KIND,
    DegradationKind: NamedEnum.DEGRADATION_KIND, Padding: NamedEnum.PADDING,
    Target: NamedEnum.TARGET, Prediction: NamedEnum.PREDICTION,
    SamplerKind: NamedEnum.SAMPLER_KIND, Split: NamedEnum.SPLIT,
    Reduction: NamedEnum.METRIC_REDUCTION, PixelMap: NamedEnum.PIXEL_MAP,
    Loss: NamedEnum.LOSS,
}
_NAMED_CLASSES = {v: k for k, v in NAMED_ENUMS.items()}


def _enum(cls, value, name):
    """An enum member from a member, an int or a (case-insensitive) name."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls[value.strip().upper().replace("-", "_")]
        except KeyError:
            raise InvalidArgumentError(
                f"{name}: unknown {cls.__name__} {value!r}; expected one of "
                f"{', '.join(m.name.lower() for m in cls)}", Status.INVALID_ARGUMENT) from None
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise TypeError(f"{name}: expected a {cls.__name__}, an int or a name, "
                        f"not {type(value).__name__}")
    try:
        return cls(operator.index(value))
    except ValueError:
        raise InvalidArgumentError(f"{name}: {value!r} is not a valid {cls.__name__}",
                                   Status.INVALID_ARGUMENT) from None


# --------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------

class ColddiffError(Exception):
    """A failed libcolddiff call: .status (a Status) and .message
    (cd_last_error() right after the call)."""
    status = None

    def __init__(self, message="", status=None):
        super().__init__(message)
        if status is not None:
            self.status = Status(status) if status in Status._value2member_map_ else status
        self.message = message


class InvalidArgumentError(ColddiffError, ValueError):
    status = Status.INVALID_ARGUMENT


class OutOfMemoryError(ColddiffError, MemoryError):
    status = Status.OUT_OF_MEMORY


class ShapeError(ColddiffError, ValueError):
    status = Status.SHAPE


class SizeOverflowError(ColddiffError, OverflowError):
    status = Status.OVERFLOW


class RangeError(ColddiffError, ValueError):
    status = Status.RANGE


class NotFiniteError(ColddiffError, ValueError):
    status = Status.NOT_FINITE


class IOFailure(ColddiffError, OSError):
    status = Status.IO


class NotFoundError(ColddiffError, LookupError):
    status = Status.NOT_FOUND


class FormatError(ColddiffError, ValueError):
    status = Status.FORMAT


class ChecksumError(FormatError):
    status = Status.CHECKSUM


class VersionError(ColddiffError, RuntimeError):
    status = Status.VERSION


class StateError(ColddiffError, RuntimeError):
    status = Status.STATE


class ClosedError(StateError, ValueError):
    """Use of an object after close()."""


class UnsupportedError(ColddiffError, NotImplementedError):
    status = Status.UNSUPPORTED


class CancelledError(ColddiffError):
    status = Status.CANCELLED


class InternalError(ColddiffError, RuntimeError):
    status = Status.INTERNAL


class LibraryError(ColddiffError, ImportError):
    """libcolddiff could not be found or loaded, or is the wrong version."""
    status = Status.VERSION


_ERRORS = {c.status: c for c in (
    InvalidArgumentError, OutOfMemoryError, ShapeError, SizeOverflowError, RangeError,
    NotFiniteError, IOFailure, NotFoundError, FormatError, ChecksumError, VersionError,
    StateError, UnsupportedError, CancelledError, InternalError)}


def _error(status, message):
    cls = _ERRORS.get(status, ColddiffError)
    return cls(message, status)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

_p, _i32, _i64, _u64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64
_int, _f, _d, _s = ctypes.c_int, ctypes.c_float, ctypes.c_double, ctypes.c_char_p
_P = ctypes.POINTER

class _OptionInfoC(ctypes.Structure):
    """struct cd_option_info, field for field (part of the C ABI)."""
    _fields_ = [
        ("name", _s),             # const char *
        ("type", _int),           # cd_option_type
        ("choices", _i32),        # int32_t: the cd_enum of a CHOICE key, else -1
        ("lo", _d),
        ("hi", _d),
        ("lo_open", _i32),
        ("hi_open", _i32),
        ("default_value", _d),
    ]


# The callback types of colddiff.h; the caller's `void *user` comes last.
_PREDICTOR_FN = ctypes.CFUNCTYPE(_int, _p, _p, _p, _p)          # z, tau, out, user
_SAMPLER_PROGRESS_FN = ctypes.CFUNCTYPE(_int, _i64, _i64, _p)   # step, steps, user
_EPOCH_FN = ctypes.CFUNCTYPE(_int, _p, _i64, _d, _d, _p)        # tr, epoch, train, val, user
_CLASSIFIER_EPOCH_FN = ctypes.CFUNCTYPE(_int, _p, _i64, _d, _p)  # c, epoch, train, user
_ALLREDUCE_FN = ctypes.CFUNCTYPE(_int, _int, _p, _i64, _p)       # op, data, count, user

#: The binding's ctypes type of each callback typedef of colddiff.h.
_CALLBACKS = {
    "cd_predictor_fn": _PREDICTOR_FN,
    "cd_sampler_progress_fn": _SAMPLER_PROGRESS_FN,
    "cd_epoch_fn": _EPOCH_FN,
    "cd_classifier_epoch_fn": _CLASSIFIER_EPOCH_FN,
    "cd_allreduce_fn": _ALLREDUCE_FN,
}

_INFO = _P(_OptionInfoC)

# Every CD_API function of colddiff.h and colddiff_experimental.h: name ->
# (restype, argtypes). The rules, which tests/python/test_binding.py holds
# this table to by parsing both headers:
#   int64_t _i64, int32_t _i32, uint64_t _u64, double _d, float _f, every
#   enum _int (a C int); const char * _s; an opaque handle (cd_tensor *)
#   and a float or byte buffer (float *, uint8_t *) _p, passed as an
#   address; any other pointer _P(its type) (an enum's: _P(_int)); an
#   output handle (cd_tensor **) _P(_p); a callback its CFUNCTYPE above.
# A function missing from the loaded library raises UnsupportedError when
# called. To bind a new C function, add its line here and a Python method
# that checks the arguments and passes the status to _check()
# (docs/python.md, "Binding a new C function").
_SIGNATURES = {
    # status and versions
    "cd_status_string": (_s, [_int]),
    "cd_last_error": (_s, []),
    "cd_last_status": (_int, []),
    "cd_clear_error": (None, []),
    "cd_version_string": (_s, []),
    "cd_abi_version": (_i32, []),
    # threads
    "cd_set_num_threads": (_int, [_i64]),
    "cd_get_num_threads": (_i64, []),
    # names of the enumerations
    "cd_enum_count": (_i64, [_int]),
    "cd_enum_name": (_s, [_int, _i32]),
    "cd_enum_parse": (_int, [_int, _s, _P(_i32)]),
    # tensors
    "cd_tensor_create": (_int, [_P(_p), _i64, _P(_i64)]),
    "cd_tensor_free": (None, [_p]),
    "cd_tensor_clone": (_int, [_P(_p), _p]),
    "cd_tensor_reshape": (_int, [_p, _i64, _P(_i64)]),
    "cd_tensor_rank": (_i64, [_p]),
    "cd_tensor_dim": (_i64, [_p, _i64]),
    "cd_tensor_numel": (_i64, [_p]),
    "cd_tensor_shape": (_int, [_p, _P(_i64), _i64]),
    "cd_tensor_data": (_p, [_p]),
    "cd_tensor_fill": (_int, [_p, _f]),
    "cd_tensor_copy_from": (_int, [_p, _p, _i64]),
    "cd_tensor_copy_to": (_int, [_p, _p, _i64]),
    "cd_tensor_copy_rows": (_int, [_p, _i64, _p, _i64, _i64]),
    # random numbers
    "cd_rng_create": (_int, [_P(_p), _u64]),
    "cd_rng_free": (None, [_p]),
    "cd_rng_split": (_int, [_P(_p), _p, _u64]),
    "cd_rng_get_state": (_int, [_p, _P(_u64)]),
    "cd_rng_set_state": (_int, [_p, _P(_u64)]),
    "cd_rng_uniform": (_int, [_p, _p, _i64]),
    "cd_rng_normal": (_int, [_p, _p, _i64]),
    "cd_rng_int_range": (_int, [_p, _P(_i64), _i64, _i64, _i64]),
    "cd_rng_uniform_tensor": (_int, [_p, _p]),
    "cd_rng_normal_tensor": (_int, [_p, _p]),
    # parameters
    "cd_params_create": (_int, [_P(_p)]),
    "cd_params_free": (None, [_p]),
    "cd_params_add": (_int, [_p, _s, _i64, _P(_i64)]),
    "cd_params_count": (_i64, [_p]),
    "cd_params_numel": (_i64, [_p]),
    "cd_params_name": (_s, [_p, _i64]),
    "cd_params_find": (_int, [_p, _s, _P(_i64)]),
    "cd_params_rank": (_i64, [_p, _i64]),
    "cd_params_shape": (_int, [_p, _i64, _P(_i64), _i64]),
    "cd_params_numel_at": (_i64, [_p, _i64]),
    "cd_params_data": (_p, [_p, _i64]),
    "cd_params_grad": (_p, [_p, _i64]),
    "cd_params_zero_grad": (_int, [_p]),
    # decoders
    "cd_decoder_config_create": (_int, [_P(_p), _int]),
    "cd_decoder_config_free": (None, [_p]),
    "cd_decoder_config_option_info": (_int, [_int, _INFO]),
    "cd_decoder_config_set_int": (_int, [_p, _int, _i64]),
    "cd_decoder_config_get_int": (_int, [_p, _int, _P(_i64)]),
    "cd_decoder_config_set_list": (_int, [_p, _int, _P(_i64), _i64]),
    "cd_decoder_config_get_list": (_int, [_p, _int, _P(_i64), _i64, _P(_i64)]),
    "cd_decoder_create": (_int, [_P(_p), _p, _p]),
    "cd_decoder_free": (None, [_p]),
    "cd_decoder_get_kind": (_int, [_p]),
    "cd_decoder_get_config": (_int, [_p, _P(_p)]),
    "cd_decoder_image_shape": (_int, [_p, _P(_i64)]),
    "cd_decoder_params": (_p, [_p]),
    "cd_decoder_param_count": (_i64, [_p]),
    "cd_decoder_forward": (_int, [_p, _p, _p, _p]),
    "cd_decoder_infer": (_int, [_p, _p, _p, _p]),
    "cd_decoder_forward_labeled": (_int, [_p, _p, _p, _p, _p]),
    "cd_decoder_infer_labeled": (_int, [_p, _p, _p, _p, _p]),
    "cd_decoder_class_count": (_i64, [_p]),
    "cd_decoder_save": (_int, [_p, _s]),
    "cd_decoder_load": (_int, [_P(_p), _s]),
    "cd_decoder_trained_T": (_i64, [_p]),
    "cd_decoder_get_prediction": (_int, [_p]),
    "cd_decoder_backward": (_int, [_p, _p, _p]),
    # schedules
    "cd_schedule_create_linear": (_int, [_P(_p), _i64, _d, _d]),
    "cd_schedule_create_linear_report": (_int, [_P(_p), _i64, _d, _d]),
    "cd_schedule_create_constant": (_int, [_P(_p), _i64, _d]),
    "cd_schedule_create_constant_report": (_int, [_P(_p), _i64, _d]),
    "cd_schedule_create_cosine": (_int, [_P(_p), _i64, _d, _d]),
    "cd_schedule_create_cosine_report": (_int, [_P(_p), _i64]),
    "cd_schedule_create_custom": (_int, [_P(_p), _p, _i64]),
    "cd_schedule_create_arrays": (_int, [_P(_p), _p, _p, _i64]),
    "cd_schedule_free": (None, [_p]),
    "cd_schedule_T": (_i64, [_p]),
    "cd_schedule_get_kind": (_int, [_p]),
    "cd_schedule_at": (_int, [_p, _i64, _p, _p]),
    "cd_schedule_copy_arrays": (_int, [_p, _p, _p, _i64]),
    # degradations
    "cd_degradation_create_noise": (_int, [_P(_p), _p]),
    "cd_degradation_create_blur": (_int, [_P(_p), _p, _i64, _int]),
    "cd_degradation_create_pixelate": (_int, [_P(_p), _p]),
    "cd_degradation_create_mask": (_int, [_P(_p), _p, _d]),
    "cd_degradation_create_fade": (_int, [_P(_p), _p, _p]),
    "cd_degradation_free": (None, [_p]),
    "cd_degradation_get_kind": (_int, [_p]),
    "cd_degradation_get_target": (_int, [_p]),
    "cd_degradation_T": (_i64, [_p]),
    "cd_degradation_copy_schedule": (_int, [_p, _p, _p, _i64]),
    "cd_degradation_apply": (_int, [_p, _p, _P(_i64), _i64, _p, _p, _p]),
    "cd_degradation_fit_prior": (_int, [_p, _p, _int, _i64]),
    "cd_degradation_set_prior": (_int, [_p, _d, _d, _d]),
    "cd_degradation_get_prior": (_int, [_p, _P(_d), _P(_d), _P(_d), _P(_i32)]),
    "cd_degradation_sample_prior": (_int, [_p, _p, _p]),
    # samplers
    "cd_sampler_create": (_int, [_P(_p), _int, _p]),
    "cd_sampler_free": (None, [_p]),
    "cd_sampler_get_kind": (_int, [_p]),
    "cd_sampler_option_info": (_int, [_int, _INFO]),
    "cd_sampler_set_int": (_int, [_p, _int, _i64]),
    "cd_sampler_set_real": (_int, [_p, _int, _d]),
    "cd_sampler_get_int": (_int, [_p, _int, _P(_i64)]),
    "cd_sampler_get_real": (_int, [_p, _int, _P(_d)]),
    "cd_sampler_set_decoder": (_int, [_p, _p]),
    "cd_sampler_set_predictor": (_int, [_p, _PREDICTOR_FN, _p]),
    "cd_sampler_set_progress": (_int, [_p, _SAMPLER_PROGRESS_FN, _p]),
    "cd_sampler_set_labels": (_int, [_p, _p]),
    "cd_sampler_step_times": (_int, [_p, _i64, _P(_i64), _i64, _P(_i64)]),
    "cd_sampler_sample": (_int, [_p, _p, _p]),
    "cd_sampler_restore": (_int, [_p, _p, _i64, _p, _p, _P(_i64), _i64, _p, _p, _p]),
    # datasets
    "cd_dataset_load_mnist": (_int, [_P(_p), _s]),
    "cd_dataset_load_idx": (_int, [_P(_p), _s, _s, _s, _s]),
    "cd_dataset_load_folder": (_int, [_P(_p), _s, _i64, _i64]),
    "cd_dataset_class_count": (_i64, [_p]),
    "cd_dataset_class_name": (_s, [_p, _i64]),
    "cd_dataset_free": (None, [_p]),
    "cd_dataset_split": (_int, [_p, _d, _u64]),
    "cd_dataset_split_from_file": (_int, [_p, _s]),
    "cd_dataset_truncate": (_int, [_p, _int, _i64]),
    "cd_dataset_count": (_i64, [_p, _int]),
    "cd_dataset_height": (_i64, [_p]),
    "cd_dataset_width": (_i64, [_p]),
    "cd_dataset_channels": (_i64, [_p]),
    "cd_dataset_shuffle": (_int, [_p, _int, _p]),
    "cd_dataset_fill_batch": (_int, [_p, _int, _i64, _p, _p, _P(_i64)]),
    "cd_dataset_mean_image": (_int, [_p, _int, _p]),
    "cd_dataset_gather": (_int, [_p, _int, _P(_i64), _i64, _p, _p]),
    # training
    "cd_trainer_create": (_int, [_P(_p), _p, _p]),
    "cd_trainer_free": (None, [_p]),
    "cd_trainer_option_info": (_int, [_int, _INFO]),
    "cd_trainer_set_int": (_int, [_p, _int, _i64]),
    "cd_trainer_set_real": (_int, [_p, _int, _d]),
    "cd_trainer_get_int": (_int, [_p, _int, _P(_i64)]),
    "cd_trainer_get_real": (_int, [_p, _int, _P(_d)]),
    "cd_trainer_decoder": (_p, [_p]),
    "cd_trainer_degradation": (_p, [_p]),
    "cd_trainer_steps": (_i64, [_p]),
    "cd_trainer_copy_ema": (_int, [_p]),
    "cd_trainer_swap_ema": (_int, [_p]),
    "cd_trainer_ema_swapped": (_i32, [_p]),
    "cd_trainer_step": (_int, [_p, _p, _p, _P(_d)]),
    "cd_trainer_step_labeled": (_int, [_p, _p, _p, _p, _P(_d)]),
    "cd_trainer_set_distributed": (_int, [_p, _i64, _i64, _ALLREDUCE_FN, _p]),
    "cd_trainer_get_distributed": (_int, [_p, _P(_i64), _P(_i64)]),
    "cd_trainer_eval_loss": (_int, [_p, _p, _int, _p, _P(_d)]),
    "cd_trainer_test_loss": (_int, [_p, _p, _int, _p, _P(_d), _P(_d)]),
    "cd_trainer_save": (_int, [_p, _s, _p]),
    "cd_trainer_load": (_int, [_P(_p), _s, _p]),
    "cd_trainer_export": (_int, [_p, _s]),
    "cd_model_save": (_int, [_s, _p, _p]),
    "cd_model_save_as": (_int, [_s, _p, _p, _int]),
    "cd_model_load": (_int, [_s, _P(_p), _P(_p)]),
    "cd_model_load_default": (_int, [_P(_p), _P(_p)]),
    "cd_trainer_progress": (_int, [_p, _int, _P(_d)]),
    "cd_trainer_request_stop": (None, [_p]),
    "cd_trainer_fit": (_int, [_p, _p, _i64, _s, _s, _p, _EPOCH_FN, _p]),
    # classifier
    "cd_classifier_create": (_int, [_P(_p), _p]),
    "cd_classifier_free": (None, [_p]),
    "cd_classifier_load": (_int, [_P(_p), _s]),
    "cd_classifier_load_default": (_int, [_P(_p)]),
    "cd_classifier_save": (_int, [_p, _s]),
    "cd_classifier_option_info": (_int, [_int, _INFO]),
    "cd_classifier_set_int": (_int, [_p, _int, _i64]),
    "cd_classifier_set_real": (_int, [_p, _int, _d]),
    "cd_classifier_get_int": (_int, [_p, _int, _P(_i64)]),
    "cd_classifier_get_real": (_int, [_p, _int, _P(_d)]),
    "cd_classifier_feature_dim": (_i64, [_p]),
    "cd_classifier_num_classes": (_i64, [_p]),
    "cd_classifier_params": (_p, [_p]),
    "cd_classifier_steps": (_i64, [_p]),
    "cd_classifier_epochs": (_i64, [_p]),
    "cd_classifier_predict": (_int, [_p, _p, _p, _p]),
    "cd_classifier_train_step": (_int, [_p, _p, _p, _P(_d)]),
    "cd_classifier_train": (_int, [_p, _p, _i64, _p, _CLASSIFIER_EPOCH_FN, _p]),
    "cd_classifier_accuracy": (_int, [_p, _p, _int, _P(_d), _P(_i64)]),
    # metrics
    "cd_metrics_normalize": (_int, [_p, _p]),
    "cd_metrics_images": (_int, [_p, _p, _int, _P(_d), _P(_d), _P(_d), _P(_int)]),
    "cd_metrics_per_image": (_int, [_p, _p, _P(_d), _P(_d), _P(_d), _i64]),
    "cd_feature_stats": (_int, [_p, _P(_d), _P(_d), _i64]),
    "cd_frechet_distance": (_int, [_p, _p, _P(_d)]),
    "cd_frechet_distance_from_stats": (_int, [_P(_d), _P(_d), _P(_d), _P(_d), _i64, _P(_d)]),
    "cd_class_histogram": (_int, [_p, _P(_i64), _i64, _P(_d), _P(_d)]),
    "cd_class_preservation": (_int, [_p, _P(_i64), _i64, _P(_d), _P(_i64)]),
    # images
    "cd_png_write_gray": (_int, [_s, _p, _i64, _i64]),
    "cd_image_grid_write_png": (_int, [_s, _p, _i64, _i64, _i32, _int, _f, _f]),
    # colddiff_experimental.h
    "cd_decoder_workspace_size": (_int, [_p, _i64, _i64, _i64, _P(_i64)]),
}

_lib = None
_lib_path = None
_load_lock = threading.Lock()


class _Missing:
    """Stands in for a function the loaded library does not export."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        raise UnsupportedError(f"{self.name} is not exported by the loaded libcolddiff "
                               f"({_lib_path}, version {version()}); it needs a newer library",
                               Status.UNSUPPORTED)


def _candidates():
    """Where to look, in order: the environment, the build tree, the system."""
    env = os.environ.get("COLDDIFF_LIBRARY")
    if env:
        return [("COLDDIFF_LIBRARY", env)], True
    found = []
    # An installed binding names its own library (cmake --install writes
    # colddiff-library.txt beside it), ahead of any build tree.
    here = os.path.dirname(os.path.abspath(__file__))
    marker = os.path.join(here, "colddiff-library.txt")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            rel = f.read().strip()
        if rel:
            found.append(("installed", os.path.normpath(os.path.join(here, rel))))
    starts = [here, os.getcwd()]
    for start in starts:
        d = start
        while True:
            for name in ("libcolddiff.so", "libcolddiff.so.0", "libcolddiff.dylib"):
                p = os.path.join(d, "build", "lib", name)
                if os.path.exists(p) and ("build tree", p) not in found:
                    found.append(("build tree", p))
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
    sys_name = ctypes.util.find_library("colddiff")
    if sys_name:
        found.append(("system", sys_name))
    found.append(("system", "libcolddiff.so.0"))
    return found, False


def _parse_version(text):
    try:
        parts = tuple(int(x) for x in text.split("."))
        if len(parts) != 3:
            raise ValueError
        return parts
    except ValueError:
        raise LibraryError(f"libcolddiff reports an unreadable version {text!r}",
                           Status.VERSION) from None


def load_library(path=None):
    """Load libcolddiff (once) and check its version; return the ctypes CDLL.

    path, if given, is used instead of the search (and must be given before
    the first use of anything else). Raises LibraryError when nothing loads
    or the ABI differs."""
    global _lib, _lib_path
    with _load_lock:
        if _lib is not None:
            if path is not None and os.fspath(path) != _lib_path:
                raise LibraryError(f"libcolddiff is already loaded from {_lib_path}",
                                   Status.STATE)
            return _lib
        if path is not None:
            cands, explicit = [("load_library(path)", os.fspath(path))], True
        else:
            cands, explicit = _candidates()
        errors = []
        lib = where = None
        for origin, cand in cands:
            try:
                lib = ctypes.CDLL(cand)
                where = cand
                break
            except OSError as e:
                errors.append(f"{origin}: {cand}: {e}")
                if explicit:
                    break
        if lib is None:
            hint = ("" if explicit else
                    "; build it (cmake --build build) or set COLDDIFF_LIBRARY to its path")
            raise LibraryError("cannot load libcolddiff: " + "; ".join(errors) + hint,
                               Status.NOT_FOUND)
        try:
            abi_fn, ver_fn = lib.cd_abi_version, lib.cd_version_string
        except AttributeError:
            raise LibraryError(f"{where} is not libcolddiff (no cd_abi_version)",
                               Status.VERSION) from None
        abi_fn.restype, abi_fn.argtypes = _i32, []
        ver_fn.restype, ver_fn.argtypes = _s, []
        abi, ver = abi_fn(), ver_fn().decode("ascii", "replace")
        if abi != ABI_VERSION:
            raise LibraryError(
                f"{where} has ABI version {abi} (library {ver}), but this binding needs "
                f"ABI {ABI_VERSION}; use a matching libcolddiff.so.{ABI_VERSION}", Status.VERSION)
        v = _parse_version(ver)
        if v[:2] < MIN_VERSION:
            raise LibraryError(f"{where} is libcolddiff {ver}; this binding needs "
                               f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer", Status.VERSION)
        for name, (res, args) in _SIGNATURES.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                setattr(lib, name, _Missing(name))
                continue
            fn.restype, fn.argtypes = res, args
        _lib, _lib_path = lib, where
        return lib


def _L():
    return _lib if _lib is not None else load_library()


def library_path():
    """The path libcolddiff was loaded from (loads it if needed)."""
    _L()
    return _lib_path


def has_function(name):
    """True if the loaded library exports the C function `name`."""
    return not isinstance(getattr(_L(), name, None), _Missing) and hasattr(_L(), name)


def version():
    """cd_version_string() of the loaded library."""
    return _L().cd_version_string().decode("ascii", "replace")


def abi_version():
    return int(_L().cd_abi_version())


def status_string(status):
    return _L().cd_status_string(int(status)).decode("utf-8", "replace")


def last_error():
    return _L().cd_last_error().decode("utf-8", "replace")


def clear_error():
    _L().cd_clear_error()


def _raise_last(fallback_status=None):
    lib = _L()
    st = int(lib.cd_last_status())
    msg = lib.cd_last_error().decode("utf-8", "replace")
    if st == 0:
        st = fallback_status if fallback_status is not None else Status.INTERNAL
    raise _error(st, msg or status_string(st))


def _check(st):
    if st != 0:
        msg = _L().cd_last_error().decode("utf-8", "replace")
        raise _error(st, msg or status_string(st))


def _nonneg(v):
    if v < 0:
        _raise_last()
    return v


def set_num_threads(n):
    _check(_L().cd_set_num_threads(_int64(n, "n")))


def get_num_threads():
    return int(_L().cd_get_num_threads())


# --------------------------------------------------------------------------
# Argument conversion: everything is checked before C sees it
# --------------------------------------------------------------------------

def _int_arg(x, name, lo, hi):
    if isinstance(x, bool) or isinstance(x, float):
        raise TypeError(f"{name}: expected an integer, not {type(x).__name__}")
    try:
        v = operator.index(x)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, not {type(x).__name__}") from None
    if not lo <= v <= hi:
        raise RangeError(f"{name} = {v} does not fit in [{lo}, {hi}]", Status.RANGE)
    return v


def _int64(x, name):
    return _int_arg(x, name, _I64_MIN, _I64_MAX)


def _int32(x, name):
    return _int_arg(x, name, _I32_MIN, _I32_MAX)


def _uint64(x, name):
    return _int_arg(x, name, 0, _U64_MAX)


def _real(x, name):
    if isinstance(x, (str, bytes)) or not hasattr(x, "__float__"):
        raise TypeError(f"{name}: expected a number, not {type(x).__name__}")
    return float(x)


def _path(p, name="path", optional=False):
    if p is None and optional:
        return None
    if not isinstance(p, (str, bytes, os.PathLike)):
        raise TypeError(f"{name}: expected a path (str, bytes or os.PathLike), "
                        f"not {type(p).__name__}")
    b = os.fsencode(p)
    if b"\0" in b:
        raise InvalidArgumentError(f"{name}: the path contains a NUL byte",
                                   Status.INVALID_ARGUMENT)
    if not b:
        raise InvalidArgumentError(f"{name}: the path is empty", Status.INVALID_ARGUMENT)
    return b


def _shape_arg(shape, name="shape"):
    if not isinstance(shape, (bool, float)) and hasattr(shape, "__index__") and \
            not hasattr(shape, "__len__"):
        shape = (shape,)
    if isinstance(shape, (str, bytes, bytearray, dict, set, frozenset)) or \
            not hasattr(shape, "__iter__") or not hasattr(shape, "__len__"):
        raise TypeError(f"{name}: expected a sequence of integers, not {type(shape).__name__}")
    dims = tuple(_int64(d, f"{name}[{i}]") for i, d in enumerate(shape))
    if not 1 <= len(dims) <= TENSOR_MAX_RANK:
        raise ShapeError(f"{name}: rank {len(dims)} is outside 1..{TENSOR_MAX_RANK}",
                         Status.SHAPE)
    for i, d in enumerate(dims):
        if d < 1:
            raise ShapeError(f"{name}[{i}] = {d} must be at least 1", Status.SHAPE)
    return dims


def _i64_array(values, name):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of integers, not {type(values).__name__}")
    if _np is not None and isinstance(values, _np.ndarray):
        values = values.ravel().tolist()
    vals = [_int64(v, f"{name}[{i}]") for i, v in enumerate(values)]
    return (_i64 * max(len(vals), 1))(*vals), len(vals)


def _f64_array(values, name):
    if _np is not None and isinstance(values, _np.ndarray):
        values = values.astype(_np.float64).ravel().tolist()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of numbers, not {type(values).__name__}")
    flat = []

    def walk(v, depth):
        if hasattr(v, "__iter__") and not isinstance(v, (str, bytes)):
            if depth > 2:
                raise TypeError(f"{name}: nested too deeply")
            for x in v:
                walk(x, depth + 1)
        else:
            flat.append(_real(v, name))
    walk(values, 0)
    return (_d * max(len(flat), 1))(*flat), len(flat)


def _flatten_numbers(seq, name):
    """A nested sequence of numbers -> (flat list, shape)."""
    if not hasattr(seq, "__len__"):
        return [_real(seq, name)], ()
    if len(seq) == 0:
        raise ShapeError(f"{name}: an empty sequence has no tensor shape", Status.SHAPE)
    first = seq[0]
    if hasattr(first, "__len__") and not isinstance(first, (str, bytes)):
        flat, sub = [], None
        for i, item in enumerate(seq):
            if not hasattr(item, "__len__") or isinstance(item, (str, bytes)):
                raise ShapeError(f"{name}: ragged nested sequence at [{i}]", Status.SHAPE)
            f, s = _flatten_numbers(item, f"{name}[{i}]")
            if sub is None:
                sub = s
            elif s != sub:
                raise ShapeError(f"{name}: ragged nested sequence at [{i}]", Status.SHAPE)
            flat.extend(f)
        return flat, (len(seq),) + sub
    return [_real(x, f"{name}[{i}]") for i, x in enumerate(seq)], (len(seq),)


class _FloatSource:
    """Contiguous float32 data from a Tensor, a buffer, a numpy array or a
    (nested) sequence of numbers: .addr, .count, .shape, kept alive by .keep."""

    def __init__(self, data, name="data"):
        self.keep = None
        if isinstance(data, Tensor):
            self.keep = data
            self.addr = data._data_addr()
            self.count = data.numel
            self.shape = data.shape
            return
        if _np is not None and isinstance(data, _np.ndarray):
            if data.dtype.kind not in "biuf":
                raise TypeError(f"{name}: a numpy array of {data.dtype} is not numeric")
            a = _np.ascontiguousarray(data, dtype=_np.float32)
            self.keep = a
            self.addr = a.ctypes.data
            self.count = int(a.size)
            self.shape = tuple(int(d) for d in a.shape)
            return
        if isinstance(data, (bytes, bytearray, memoryview, array.array)) or \
                (hasattr(data, "__buffer__") and not isinstance(data, (list, tuple))):
            try:
                mv = memoryview(data)
            except TypeError:
                mv = None
            if mv is not None:
                fmt = mv.format.lstrip("<=@")
                if fmt in ("B", "b", "c") and mv.nbytes % 4 == 0:
                    mv = mv.cast("B") if mv.c_contiguous else mv  # raw float32 bytes
                    if mv.c_contiguous:
                        mv = mv.cast("f")
                        fmt = "f"
                if fmt != "f" or mv.itemsize != 4:
                    raise TypeError(f"{name}: a buffer of format {mv.format!r} is not float32; "
                                    "use array.array('f', ...), raw float32 bytes or a "
                                    "float32 array")
                if not mv.c_contiguous:
                    raise ShapeError(f"{name}: the buffer is not C-contiguous", Status.SHAPE)
                n = mv.nbytes // 4
                if mv.readonly:
                    arr = (_f * max(n, 1)).from_buffer_copy(mv.tobytes() or b"\0" * 4)
                else:
                    arr = (_f * n).from_buffer(mv.cast("B")) if n else (_f * 1)()
                self.keep = (mv, arr)
                self.addr = ctypes.addressof(arr)
                self.count = n
                self.shape = tuple(mv.shape) if mv.ndim else ()
                return
        if isinstance(data, (str, bytes)) or not hasattr(data, "__len__"):
            raise TypeError(f"{name}: expected a Tensor, a float32 buffer, a numpy array or "
                            f"a sequence of numbers, not {type(data).__name__}")
        flat, shape = _flatten_numbers(data, name)
        arr = (_f * len(flat))(*flat)
        self.keep = arr
        self.addr = ctypes.addressof(arr)
        self.count = len(flat)
        self.shape = shape


# --------------------------------------------------------------------------
# Ownership: reference-counted C pointers
# --------------------------------------------------------------------------

class _Ref:
    """One C pointer with a count of its holders. The creating wrapper holds
    one; dependents (samplers, borrowed views, exported buffers, calls in
    progress) hold more. When the count reaches 0 the pointer is freed and
    then the parents (what this object borrowed) are released: dependents
    are always freed before what they depend on."""
    __slots__ = ("ptr", "free", "parents", "count", "keep", "__weakref__")
    _lock = threading.RLock()

    def __init__(self, ptr, free, parent=None):
        self.ptr, self.free, self.parents, self.count, self.keep = ptr, free, [], 1, None
        if parent is not None:
            parent.acquire()
            self.parents.append(parent)

    def acquire(self):
        with _Ref._lock:
            if self.ptr is None:
                raise ClosedError("the object is closed", Status.STATE)
            self.count += 1

    def adopt(self, parent):
        """Depend on parent (acquired here) until this record is freed."""
        parent.acquire()
        with _Ref._lock:
            self.parents.append(parent)

    def drop(self, parent):
        """Stop depending on parent (released here)."""
        with _Ref._lock:
            self.parents.remove(parent)
        parent.release()

    def release(self):
        with _Ref._lock:
            self.count -= 1
            if self.count > 0:
                return
            ptr, free, parents = self.ptr, self.free, self.parents
            self.ptr, self.free, self.parents, self.keep = None, None, [], None
        if ptr and free is not None:
            free(ptr)
        for p in reversed(parents):
            p.release()


class _Object:
    """Base of every wrapper: a _Ref, close(), context manager, __del__."""
    _ref = None
    _closed_why = None

    @classmethod
    def _wrap(cls, ptr, free, parent=None):
        self = cls.__new__(cls)
        self._ref = _Ref(ptr, free, parent)
        return self

    @property
    def _p(self):
        r = self._ref
        if r is None or r.ptr is None:
            why = self._closed_why or "it was closed"
            raise ClosedError(f"{type(self).__name__} cannot be used: {why}", Status.STATE)
        return r.ptr

    @property
    def closed(self):
        r = self._ref
        return r is None or r.ptr is None

    @property
    def borrowed(self):
        """True if this object is a view of memory another object owns."""
        r = self._ref
        return r is not None and r.free is None

    def close(self):
        """Free the object now (or, if other live objects still use it, when
        the last of them goes). Idempotent."""
        r, self._ref = self._ref, None
        if r is not None:
            r.release()
        if self._closed_why is None:
            self._closed_why = "it was closed"

    def __enter__(self):
        self._p  # raises if closed
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self):
        if self.closed:
            return f"<colddiff.{type(self).__name__} closed>"
        try:
            return f"<colddiff.{type(self).__name__} {self._describe()}>"
        except Exception:
            return f"<colddiff.{type(self).__name__}>"

    def _describe(self):
        return ""


class _Hold:
    """Hold the refs of objects for the length of a call, so that closing
    one of them meanwhile (from a callback or another thread) cannot free
    memory C is using."""

    def __init__(self, *objs):
        self.refs = []
        try:
            for o in objs:
                if o is not None:
                    o._p  # ClosedError if closed
                    o._ref.acquire()
                    self.refs.append(o._ref)
        except BaseException:
            self.__exit__()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        refs, self.refs = self.refs, []
        for r in reversed(refs):
            r.release()
        return False


def _expect(obj, cls, name, optional=False):
    if obj is None and optional:
        return None
    if not isinstance(obj, cls):
        raise TypeError(f"{name}: expected a {cls.__name__}, not {type(obj).__name__}")
    return obj._p


def _new_handle(create, *args):
    out = _p()
    _check(create(ctypes.byref(out), *args))
    if not out.value:
        raise InternalError("a create call succeeded but returned NULL", Status.INTERNAL)
    return out.value


def _call_c(objs, fn, on_interrupt=None):
    """Run fn() (a C call that may take long or call back into Python) while
    holding objs; return (status, cd_last_error() if it failed).

    In the main thread the call runs in a helper thread, and the main thread
    waits: a Ctrl-C then arrives as KeyboardInterrupt here, never inside a
    ctypes callback (where Python could only print and drop it). On the
    first one on_interrupt() asks C to stop and we wait for it; a second one
    is raised at once (the helper still holds objs, so nothing is freed
    under C's feet). The interrupt is re-raised after the call returns."""
    result = []
    done = threading.Event()

    def work():
        try:
            with _Hold(*objs):
                st = fn()
                result.append((st, _L().cd_last_error().decode("utf-8", "replace") if st else ""))
        except BaseException as e:  # noqa: B902 - handed to the caller
            result.append(e)
        finally:
            done.set()

    if threading.current_thread() is not threading.main_thread():
        work()
    else:
        # Wait on our own Event, not Thread.join(): an interrupted join can
        # mark a running thread as stopped (CPython bpo-45274 handling).
        worker = threading.Thread(target=work, name="colddiff-call", daemon=True)
        worker.start()
        interrupted = None
        while True:
            try:
                while not done.wait(0.05):
                    pass
                break
            except KeyboardInterrupt as e:
                if interrupted is not None:
                    raise
                interrupted = e
                if on_interrupt is not None:
                    on_interrupt()
        if interrupted is not None:
            raise interrupted
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


# --------------------------------------------------------------------------
# Tensor
# --------------------------------------------------------------------------

class Tensor(_Object):
    """A dense row-major float32 array (cd_tensor) of rank 1..8.

    Tensor(shape) makes zeros; Tensor.from_data(data[, shape]) copies data in.
    t.memoryview() and t.numpy() are zero-copy views that keep the memory
    alive; t.tolist() and t.to_array() are copies."""

    def __init__(self, shape, fill=None):
        dims = _shape_arg(shape)
        lib = _L()
        arr = (_i64 * len(dims))(*dims)
        self._ref = _Ref(_new_handle(lib.cd_tensor_create, len(dims), arr), lib.cd_tensor_free)
        if fill is not None:
            self.fill(fill)

    @classmethod
    def _borrow(cls, ptr, parent=None):
        return cls._wrap(ptr, None, parent)

    @classmethod
    def from_data(cls, data, shape=None):
        """A new tensor holding a copy of data (a Tensor, float32 buffer, numpy
        array or nested sequence of numbers), with data's shape or `shape`."""
        src = _FloatSource(data)
        shp = _shape_arg(shape) if shape is not None else (src.shape or (src.count,))
        t = cls(shp)
        try:
            t._copy_in(src)
        except BaseException:
            t.close()
            raise
        return t

    @classmethod
    def from_numpy(cls, array_like):
        if _np is None:
            raise ImportError("Tensor.from_numpy needs numpy, which is not importable")
        return cls.from_data(_np.asarray(array_like))

    # shape
    @property
    def rank(self):
        return int(_nonneg(_L().cd_tensor_rank(self._p)))

    ndim = rank

    @property
    def shape(self):
        lib = _L()
        buf = (_i64 * TENSOR_MAX_RANK)()
        _check(lib.cd_tensor_shape(self._p, buf, TENSOR_MAX_RANK))
        return tuple(buf[: self.rank])

    @property
    def numel(self):
        return int(_nonneg(_L().cd_tensor_numel(self._p)))

    size = numel

    def dim(self, axis):
        a = _int64(axis, "axis")
        r = self.rank
        if not -r <= a < r:
            raise RangeError(f"axis {a} is outside -{r}..{r - 1}", Status.RANGE)
        return int(_nonneg(_L().cd_tensor_dim(self._p, a)))

    def __len__(self):
        return self.shape[0]

    def reshape(self, *shape):
        """Change the shape in place (same element count); returns self."""
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = shape[0]
        dims = _shape_arg(shape)
        _check(_L().cd_tensor_reshape(self._p, len(dims), (_i64 * len(dims))(*dims)))
        return self

    def clone(self):
        t = Tensor.__new__(Tensor)
        lib = _L()
        t._ref = _Ref(_new_handle(lib.cd_tensor_clone, self._p), lib.cd_tensor_free)
        return t

    # data
    def _data_addr(self):
        a = _L().cd_tensor_data(self._p)
        if not a:
            _raise_last()
        return a

    @property
    def data_ptr(self):
        """The address of the first float (borrowed; valid while open)."""
        return self._data_addr()

    def fill(self, value):
        _check(_L().cd_tensor_fill(self._p, _real(value, "value")))
        return self

    def _copy_in(self, src):
        n = self.numel
        if src.count != n:
            raise ShapeError(f"copy_from: {src.count} values for a tensor of {n} "
                             f"elements {self.shape}", Status.SHAPE)
        addr = src.addr
        mine = self._data_addr()
        if addr < mine + 4 * n and mine < addr + 4 * n:  # overlap: copy first
            tmp = (_f * n)()
            ctypes.memmove(tmp, addr, 4 * n)
            addr, src = ctypes.addressof(tmp), tmp
        _check(_L().cd_tensor_copy_from(self._p, addr, n))

    def copy_from(self, data):
        """Copy numel() floats in from a Tensor, buffer, array or sequence."""
        self._copy_in(_FloatSource(data))
        return self

    def copy_rows(self, dst_row, src, src_row=0, n=None):
        """Copy n rows (slices along the first axis) of the Tensor src, from
        src_row on, over this tensor's rows from dst_row on
        (cd_tensor_copy_rows). n defaults to the rest of src."""
        if not isinstance(src, Tensor):
            raise TypeError(f"copy_rows: src must be a Tensor, not {type(src).__name__}")
        if n is None:
            n = src.shape[0] - _int64(src_row, "src_row") if src.shape else 0
        _check(_L().cd_tensor_copy_rows(self._p, _int64(dst_row, "dst_row"), src._p,
                                        _int64(src_row, "src_row"), _int64(n, "n")))
        return self

    def to_array(self):
        """A copy as array.array('f') (flat)."""
        n = self.numel
        out = array.array("f", bytes(4 * n))
        addr, _ = out.buffer_info()
        _check(_L().cd_tensor_copy_to(self._p, addr, n))
        return out

    def tolist(self):
        """A copy as nested lists of the tensor's shape."""
        return self.memoryview().tolist()

    def memoryview(self):
        """A writable zero-copy memoryview (format 'f', the tensor's shape).
        It keeps the tensor's memory alive after close()."""
        shape, n = self.shape, self.numel
        return _view(self, self._data_addr(), n, shape)

    def numpy(self):
        """A writable zero-copy numpy.ndarray view (needs numpy). It keeps the
        tensor's memory alive after close()."""
        if _np is None:
            raise ImportError("Tensor.numpy() needs numpy, which is not importable; "
                              "use memoryview() or tolist()")
        shape, n = self.shape, self.numel
        return _np.frombuffer(_export(self, self._data_addr(), n), dtype=_np.float32).reshape(shape)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if dtype is not None and _np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    if sys.version_info >= (3, 12):
        def __buffer__(self, flags):  # PEP 688: memoryview(tensor) works
            return self.memoryview()

    def _describe(self):
        return f"shape={self.shape}"


def _export(owner, addr, n):
    """A ctypes float array over memory `owner` owns, holding a ref to it."""
    arr = (_f * n).from_address(addr)
    holder = _Ref(addr, None, owner._ref)  # released when arr dies
    arr._cd_holder = holder
    weakref.finalize(arr, holder.release).atexit = False
    return arr


def _view(owner, addr, n, shape):
    mv = memoryview(_export(owner, addr, n)).cast("B")
    return mv.cast("f", shape) if shape else mv.cast("f")


def _labels_tensor(labels):
    """A rank-1 Tensor of class ids (floats, as the C API takes them)."""
    vals = [_real(v, "labels") for v in labels]
    if not vals:
        raise ValueError("labels: expected at least one value")
    return Tensor.from_data(vals)


def _as_tensor(x, name, optional=False):
    if x is None and optional:
        return None
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor, not {type(x).__name__}"
                        + ("; convert with Tensor.from_data()" if x is not None else ""))
    x._p
    return x


def _out_tensor(out, shape_default, name="out"):
    """out: a Tensor, a shape to allocate, or None for shape_default."""
    if isinstance(out, Tensor):
        out._p
        return out
    if out is None:
        return Tensor(shape_default)
    # An array (numpy, array.array, a buffer) would otherwise be read as a
    # shape and fail on its first element; say what to pass instead.
    kind = getattr(getattr(out, "dtype", None), "kind", None)
    if kind == "f" or getattr(out, "typecode", None) in ("f", "d") or \
            (isinstance(out, memoryview) and out.format in ("f", "d")):
        raise TypeError(f"{name}: expected a Tensor or a shape such as (16, 1, 28, 28), not "
                        f"an array ({type(out).__name__}); pass its shape, then read the "
                        f"result with .numpy() or .to_array()")
    return Tensor(_shape_arg(out, name))


# --------------------------------------------------------------------------
# Rng
# --------------------------------------------------------------------------

class Rng(_Object):
    """A Philox4x32-10 generator (cd_rng) seeded with a 64-bit seed."""

    def __init__(self, seed=0):
        s = _uint64(seed, "seed")
        lib = _L()
        self._ref = _Ref(_new_handle(lib.cd_rng_create, s), lib.cd_rng_free)

    def split(self, stream):
        """An independent generator for substream `stream` (rng unchanged)."""
        lib = _L()
        r = Rng.__new__(Rng)
        r._ref = _Ref(_new_handle(lib.cd_rng_split, self._p, _uint64(stream, "stream")),
                      lib.cd_rng_free)
        return r

    @property
    def state(self):
        """The full state as a tuple of 4 unsigned 64-bit ints (settable)."""
        buf = (_u64 * RNG_STATE_WORDS)()
        _check(_L().cd_rng_get_state(self._p, buf))
        return tuple(buf)

    @state.setter
    def state(self, words):
        if isinstance(words, (str, bytes)) or not hasattr(words, "__len__"):
            raise TypeError("state: expected 4 integers")
        if len(words) != RNG_STATE_WORDS:
            raise ShapeError(f"state: expected {RNG_STATE_WORDS} words, got {len(words)}",
                             Status.SHAPE)
        buf = (_u64 * RNG_STATE_WORDS)(*[_uint64(w, f"state[{i}]") for i, w in enumerate(words)])
        _check(_L().cd_rng_set_state(self._p, buf))

    def _draw(self, fn, n, typecode):
        n = _int64(n, "n")
        if n < 0:
            raise RangeError(f"n = {n} must not be negative", Status.RANGE)
        out = array.array(typecode, bytes(array.array(typecode).itemsize * n))
        if n:
            _check(fn(self._p, out.buffer_info()[0], n))
        return out

    def uniform(self, n):
        """n floats uniform on [0, 1), as array.array('f')."""
        return self._draw(_L().cd_rng_uniform, n, "f")

    def normal(self, n):
        """n standard normal floats, as array.array('f')."""
        return self._draw(_L().cd_rng_normal, n, "f")

    def int_range(self, n, lo, hi):
        """n integers uniform on [lo, hi] inclusive, as array.array('q')."""
        lo, hi = _int64(lo, "lo"), _int64(hi, "hi")
        lib = _L()
        return self._draw(lambda p, a, k: lib.cd_rng_int_range(
            p, ctypes.cast(a, _P(_i64)), k, lo, hi), n, "q")

    def fill_uniform(self, t):
        _check(_L().cd_rng_uniform_tensor(self._p, _expect(t, Tensor, "t")))
        return t

    def fill_normal(self, t):
        _check(_L().cd_rng_normal_tensor(self._p, _expect(t, Tensor, "t")))
        return t

    def _describe(self):
        return f"state={self.state}"


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------

class Params(_Object):
    """A named set of float32 tensors in one flat block (cd_params), with a
    parallel gradient block. Params() is a set you own; decoder.params is a
    borrowed view that keeps its decoder alive.

    Access by name: p[name] (a copy, array.array('f')), p[name] = values,
    p.view(name) (a zero-copy memoryview of the tensor's shape)."""

    def __init__(self):
        lib = _L()
        self._ref = _Ref(_new_handle(lib.cd_params_create), lib.cd_params_free)

    def add(self, name, shape):
        dims = _shape_arg(shape)
        _check(_L().cd_params_add(self._p, _name_arg(name), len(dims),
                                  (_i64 * len(dims))(*dims)))

    def __len__(self):
        return int(_nonneg(_L().cd_params_count(self._p)))

    @property
    def numel(self):
        """Total floats over all tensors."""
        return int(_nonneg(_L().cd_params_numel(self._p)))

    def names(self):
        lib, p = _L(), self._p
        out = []
        for i in range(len(self)):
            s = lib.cd_params_name(p, i)
            if s is None:
                _raise_last()
            out.append(s.decode("utf-8"))
        return out

    keys = names

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name):
        try:
            self.index(name)
            return True
        except (KeyError, TypeError):
            return False

    def index(self, name):
        """The position of the tensor called name (KeyError if none)."""
        if isinstance(name, int) and not isinstance(name, bool):
            n = len(self)
            if not 0 <= name < n:
                raise KeyError(f"index {name} is outside 0..{n - 1}")
            return name
        out = _i64()
        st = _L().cd_params_find(self._p, _name_arg(name), ctypes.byref(out))
        if st == Status.NOT_FOUND:
            raise KeyError(name)
        _check(st)
        return out.value

    def shape(self, name):
        i = self.index(name)
        buf = (_i64 * TENSOR_MAX_RANK)()
        lib = _L()
        _check(lib.cd_params_shape(self._p, i, buf, TENSOR_MAX_RANK))
        return tuple(buf[: _nonneg(lib.cd_params_rank(self._p, i))])

    def numel_at(self, name):
        return int(_nonneg(_L().cd_params_numel_at(self._p, self.index(name))))

    def _addr(self, fn, i):
        a = fn(self._p, i)
        if not a:
            _raise_last()
        return a

    def view(self, name=None):
        """Zero-copy writable memoryview of a tensor's values (name None: the
        whole flat block, 1-D). Keeps the owner alive."""
        lib = _L()
        if name is None:
            return _view(self, self._addr(lib.cd_params_data, -1), self.numel, None)
        i = self.index(name)
        return _view(self, self._addr(lib.cd_params_data, i), self.numel_at(i), self.shape(i))

    def grad_view(self, name=None):
        """Zero-copy memoryview of a tensor's gradient (None: the whole block)."""
        lib = _L()
        if name is None:
            return _view(self, self._addr(lib.cd_params_grad, -1), self.numel, None)
        i = self.index(name)
        return _view(self, self._addr(lib.cd_params_grad, i), self.numel_at(i), self.shape(i))

    def numpy(self, name=None):
        """Zero-copy numpy view of a tensor's values (needs numpy)."""
        if _np is None:
            raise ImportError("Params.numpy() needs numpy, which is not importable")
        return _np.asarray(self.view(name))

    def get(self, name):
        """A copy of a tensor's values, flat, as array.array('f')."""
        i = self.index(name)
        n = self.numel_at(i)
        out = array.array("f", bytes(4 * n))
        ctypes.memmove(out.buffer_info()[0], self._addr(_L().cd_params_data, i), 4 * n)
        return out

    def get_grad(self, name):
        i = self.index(name)
        n = self.numel_at(i)
        out = array.array("f", bytes(4 * n))
        ctypes.memmove(out.buffer_info()[0], self._addr(_L().cd_params_grad, i), 4 * n)
        return out

    def set(self, name, values):
        """Copy numel_at(name) values in (Tensor, buffer, array or sequence)."""
        i = self.index(name)
        n = self.numel_at(i)
        src = _FloatSource(values, "values")
        if src.count != n:
            raise ShapeError(f"{self.names()[i]}: {src.count} values for a tensor of {n} "
                             f"elements {self.shape(i)}", Status.SHAPE)
        ctypes.memmove(self._addr(_L().cd_params_data, i), src.addr, 4 * n)

    __getitem__ = get
    __setitem__ = set

    def items(self):
        return [(n, self.get(n)) for n in self.names()]

    def zero_grad(self):
        _check(_L().cd_params_zero_grad(self._p))

    def _describe(self):
        return f"{len(self)} tensors, {self.numel} floats"


def _name_arg(name):
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, not {type(name).__name__}")
    b = name.encode("utf-8")
    if b"\0" in b:
        raise InvalidArgumentError("name: contains a NUL byte", Status.INVALID_ARGUMENT)
    return b


# --------------------------------------------------------------------------
# Options: one table-driven implementation for every configurable object
# --------------------------------------------------------------------------

#: What cd_<object>_option_info() says about a key: the key (an enum
#: member), its library name ("lr", "clip_lo"), its OptionType, the
#: NamedEnum of a CHOICE key's values (None otherwise), the allowed range
#: lo..hi (+-1.8e308 when unbounded; lo_open / hi_open: the end itself is
#: not allowed) and the value of a new object (an int, or a float for REAL).
OptionInfo = collections.namedtuple(
    "OptionInfo", "key name type choices lo hi lo_open hi_open default_value")


class _OptionTable:
    """How one kind of object reaches its options: the key enum and the C
    calls <prefix>_option_info, _set_int, _set_real, _get_int, _get_real
    (and _set_list, _get_list for INT_LIST keys). The key's OptionType,
    from option_info, chooses the call."""

    def __init__(self, keys, prefix, what, real=True):
        self.keys, self.prefix, self.what, self.real = keys, prefix, what, real
        self._info = {}
        self._names = None

    def _fn(self, suffix):
        return getattr(_L(), f"{self.prefix}_{suffix}")

    def info(self, key):
        k = self.key(key)
        got = self._info.get(int(k))
        if got is None:
            c = _OptionInfoC()
            _check(self._fn("option_info")(int(k), ctypes.byref(c)))
            try:
                t = OptionType(c.type)
            except ValueError:
                raise UnsupportedError(f"{self.what} option {k.name.lower()}: type {c.type} is "
                                       "newer than this binding", Status.UNSUPPORTED) from None
            choices = None
            if c.choices >= 0:
                choices = NamedEnum(c.choices) if c.choices in NamedEnum._value2member_map_ \
                    else c.choices
            d = c.default_value
            default = float(d) if t == OptionType.REAL else int(d) if math.isfinite(d) else d
            got = OptionInfo(k, (c.name or b"").decode("ascii", "replace"), t, choices,
                             c.lo, c.hi, bool(c.lo_open), bool(c.hi_open), default)
            self._info[int(k)] = got
        return got

    def names(self):
        """{library name: key} over the enum's keys."""
        if self._names is None:
            names = {}
            for k in self.keys:
                try:
                    names[self.info(k).name] = k
                except ColddiffError:  # a key this library lacks: by member only
                    pass
            self._names = names
        return self._names

    def key(self, key):
        """The enum member for a member, a number or a name."""
        if isinstance(key, self.keys):
            return key
        if isinstance(key, str):
            names = self.names()
            k = names.get(key)
            if k is None:
                k = names.get(key.strip().lower().replace("-", "_"))
            if k is None:
                raise InvalidArgumentError(
                    f"key: unknown {self.what} option {key!r}; expected one of "
                    f"{', '.join(names)}", Status.INVALID_ARGUMENT)
            return k
        return _enum(self.keys, key, "key")

    def _int_value(self, inf, value):
        if inf.type == OptionType.BOOL and isinstance(value, bool):
            return int(value)
        if inf.type == OptionType.CHOICE:
            cls = _NAMED_CLASSES.get(inf.choices)
            if isinstance(value, str):
                if cls is not None:
                    return int(_enum(cls, value, inf.name))
                out = _i32()
                _check(_L().cd_enum_parse(int(inf.choices), value.encode("utf-8"),
                                          ctypes.byref(out)))
                return out.value
            if cls is not None and isinstance(value, enum.Enum) and not isinstance(value, cls):
                raise TypeError(f"{inf.name}: expected a {cls.__name__}, not "
                                f"{type(value).__name__}.{value.name}")
        return _int64(value, inf.name)

    def set(self, obj, key, value):
        inf = self.info(key)
        p, k = obj._p, int(inf.key)
        if inf.type == OptionType.REAL:
            _check(self._fn("set_real")(p, k, _real(value, inf.name)))
        elif inf.type == OptionType.INT_LIST:
            arr, n = _i64_array(value, inf.name)
            _check(self._fn("set_list")(p, k, arr, n))
        else:
            _check(self._fn("set_int")(p, k, self._int_value(inf, value)))

    def get(self, obj, key):
        inf = self.info(key)
        p, k = obj._p, int(inf.key)
        if inf.type == OptionType.REAL:
            v = _d()
            _check(self._fn("get_real")(p, k, ctypes.byref(v)))
            return v.value
        if inf.type == OptionType.INT_LIST:
            cap, n = 16, _i64()
            while True:
                buf = (_i64 * cap)()
                st = self._fn("get_list")(p, k, buf, cap, ctypes.byref(n))
                if st == Status.SHAPE and n.value > cap:
                    cap = n.value
                    continue
                _check(st)
                return tuple(buf[: n.value])
        v = _i64()
        _check(self._fn("get_int")(p, k, ctypes.byref(v)))
        if inf.type == OptionType.BOOL:
            return bool(v.value)
        if inf.type == OptionType.CHOICE:
            cls = _NAMED_CLASSES.get(inf.choices)
            if cls is not None and v.value in cls._value2member_map_:
                return cls(v.value)
        return v.value

    # The typed C calls as they are, for any key: a key of the other type
    # is the library's InvalidArgumentError, not converted here.
    def set_int(self, obj, key, value):
        k = self.key(key)
        v = int(value) if isinstance(value, bool) else _int64(value, "value")
        _check(self._fn("set_int")(obj._p, int(k), v))

    def _no_real(self, key, call):
        if not self.real:  # as the C calls would say, had the object any
            inf = self.info(key)
            raise InvalidArgumentError(
                f"{self.prefix}_{call}: option '{inf.name}' holds "
                f"{'a list of integers' if inf.type == OptionType.INT_LIST else 'an integer'}; "
                f"{self.what} options have no _real calls", Status.INVALID_ARGUMENT)

    def set_real(self, obj, key, value):
        self._no_real(key, "set_real")
        _check(self._fn("set_real")(obj._p, int(self.key(key)), _real(value, "value")))

    def get_int(self, obj, key):
        v = _i64()
        _check(self._fn("get_int")(obj._p, int(self.key(key)), ctypes.byref(v)))
        return v.value

    def get_real(self, obj, key):
        self._no_real(key, "get_real")
        v = _d()
        _check(self._fn("get_real")(obj._p, int(self.key(key)), ctypes.byref(v)))
        return v.value


class _Configurable:
    """Options by key for a class with an _OptionTable in _options: a key is
    an enum member, its number or its name ("lr", "clip_lo"), and the
    key's OptionType picks the typed C call (see OptionInfo)."""
    _options = None

    @classmethod
    def option_info(cls, key):
        """An OptionInfo: name, type, choices, range and default of a key."""
        return cls._options.info(key)

    @classmethod
    def option_keys(cls):
        """Every key of the object's option enum (experimental ones too)."""
        return list(cls._options.keys)

    def set(self, key, value):
        """Set an option: an int for INT (and for BOOL, or True/False), an
        enum member, its number or name for CHOICE, a number for REAL, a
        sequence of ints for INT_LIST. A failed set changes nothing."""
        self._options.set(self, key, value)

    def get(self, key):
        """An option's value: int, bool, an enum member (CHOICE), float
        (REAL) or a tuple (INT_LIST)."""
        return self._options.get(self, key)

    def __getitem__(self, key):
        return self._options.get(self, key)

    def __setitem__(self, key, value):
        self._options.set(self, key, value)

    def configure(self, **options):
        """Set several options by name; if one fails, those set before it
        get their old values back and the error is raised."""
        done = []
        try:
            for name, value in options.items():
                old = self.get(name)
                self.set(name, value)
                done.append((name, old))
        except BaseException:
            for name, old in reversed(done):
                try:
                    self.set(name, old)
                except ColddiffError:  # pragma: no cover - the old value was valid
                    pass
            raise
        return self

    def options(self):
        """{name: value} of every option."""
        return {self._options.info(k).name: self.get(k) for k in self._options.keys}

    def set_int(self, key, value):
        """cd_<object>_set_int as it is (for INT, BOOL and CHOICE keys)."""
        self._options.set_int(self, key, value)

    def set_real(self, key, value):
        """cd_<object>_set_real as it is (for REAL keys)."""
        self._options.set_real(self, key, value)

    def get_int(self, key):
        return self._options.get_int(self, key)

    def get_real(self, key):
        return self._options.get_real(self, key)


_DECODER_OPTIONS = _OptionTable(DecoderOption, "cd_decoder_config", "decoder", real=False)
_SAMPLER_OPTIONS = _OptionTable(SamplerOption, "cd_sampler", "sampler")
_TRAINER_OPTIONS = _OptionTable(TrainerOption, "cd_trainer", "trainer")
_CLASSIFIER_OPTIONS = _OptionTable(ClassifierOption, "cd_classifier", "classifier")


# --------------------------------------------------------------------------
# Decoder configuration and decoders
# --------------------------------------------------------------------------

class DecoderConfig(_Configurable, _Object):
    """Construction settings of a decoder (cd_decoder_config), holding the
    report's model of `kind` ("cnn" or "unet") until changed. Options are
    the DecoderOption keys (see _Configurable: set, get, [], options(),
    option_info()); HIDDEN and DIM_MULTS hold lists.

        cfg = DecoderConfig("cnn", hidden=(8, 8), kernel=3)
        cfg["time_hidden"] = 32; cfg["hidden"] -> (8, 8)
    """
    _options = _DECODER_OPTIONS

    def __init__(self, kind="cnn", **options):
        k = _enum(DecoderKind, kind, "kind")
        lib = _L()
        self._ref = _Ref(_new_handle(lib.cd_decoder_config_create, int(k)),
                         lib.cd_decoder_config_free)
        try:
            self.configure(**options)
        except BaseException:
            self.close()
            raise

    def _describe(self):
        return repr(self.options())


class Decoder(_Object):
    """A decoder network g(z, tau) (cd_decoder): the report's CNN or UNet.

        Decoder(config_or_kind, rng, **config_options)   # fresh weights
        Decoder.load(path)                            # from a checkpoint
    """

    def __init__(self, config="cnn", rng=None, **options):
        if not isinstance(rng, Rng):
            raise TypeError("rng: expected an Rng (the weights are drawn from it), not "
                            f"{type(rng).__name__}")
        own = None
        if isinstance(config, DecoderConfig):
            cfg = config
            if options:
                raise TypeError("config options go into the DecoderConfig when one is given")
        else:
            cfg = own = DecoderConfig(config, **options)
        try:
            lib = _L()
            self._ref = _Ref(_new_handle(lib.cd_decoder_create, cfg._p, rng._p),
                             lib.cd_decoder_free)
        finally:
            if own is not None:
                own.close()

    @classmethod
    def load(cls, path):
        lib = _L()
        return cls._wrap(_new_handle(lib.cd_decoder_load, _path(path)), lib.cd_decoder_free)

    def save(self, path):
        _check(_L().cd_decoder_save(self._p, _path(path)))

    @property
    def trained_T(self):
        """The T it was trained for (0: unknown; cd_decoder_trained_T)."""
        return int(_nonneg(_L().cd_decoder_trained_T(self._p)))

    @property
    def prediction(self):
        """What it outputs under the noise degradation (cd_decoder_get_prediction)."""
        return Prediction(_nonneg(_L().cd_decoder_get_prediction(self._p)))

    @property
    def kind(self):
        """DecoderKind.CNN or .UNET (cd_decoder_get_kind)."""
        return DecoderKind(_nonneg(_L().cd_decoder_get_kind(self._p)))

    @property
    def config(self):
        """A copy of the configuration (a DecoderConfig you own)."""
        lib = _L()
        return DecoderConfig._wrap(_new_handle(lambda out: lib.cd_decoder_get_config(self._p, out)),
                                   lib.cd_decoder_config_free)

    @property
    def params(self):
        """The parameters by name (borrowed: keeps this decoder alive)."""
        p = _L().cd_decoder_params(self._p)
        if not p:
            _raise_last()
        return Params._wrap(p, None, self._ref)

    @property
    def param_count(self):
        return int(_nonneg(_L().cd_decoder_param_count(self._p)))

    @property
    def image_shape(self):
        """(C, H, W) the decoder is for: the CNN's fitted size, the size a
        UNet was trained at (cd_decoder_image_shape)."""
        shape = (_i64 * 3)()
        _check(_L().cd_decoder_image_shape(self._p, shape))
        return tuple(shape)

    def workspace_size(self, n, height, width):
        """Bytes of workspace a forward and backward at batch n use
        (cd_decoder_workspace_size: experimental, colddiff_experimental.h)."""
        out = _i64()
        _check(_L().cd_decoder_workspace_size(self._p, _int64(n, "n"), _int64(height, "height"),
                                              _int64(width, "width"), ctypes.byref(out)))
        return out.value

    @property
    def class_count(self):
        """K of a class-conditional decoder, 0 for none (cd_decoder_class_count)."""
        return int(_nonneg(_L().cd_decoder_class_count(self._p)))

    def forward(self, z, tau, out=None, labels=None):
        """out = g(z, tau): z is N x C x H x W, tau N floats (a Tensor or a
        sequence). out may be a Tensor to fill; returns it. labels: for a
        class-conditional decoder, N classes (-1 for none), a Tensor or a
        sequence; None is "no class" for all (cd_decoder_forward_labeled)."""
        return self._run("cd_decoder_forward_labeled", z, tau, out, labels)

    def infer(self, z, tau, out=None, labels=None):
        """forward() for a pass with no backward after it: the same output,
        in a smaller workspace (cd_decoder_infer_labeled)."""
        return self._run("cd_decoder_infer_labeled", z, tau, out, labels)

    def _run(self, name, z, tau, out, labels):
        z = _as_tensor(z, "z")
        owned = []
        if not isinstance(tau, Tensor):
            vals = [_real(v, "tau") for v in (tau if hasattr(tau, "__iter__") else [tau])]
            if len(vals) == 1 and z.shape[0] > 1:
                vals = vals * z.shape[0]
            tau = Tensor.from_data(vals)
            owned.append(tau)
        if labels is not None and not isinstance(labels, Tensor):
            labels = _labels_tensor(labels)
            owned.append(labels)
        try:
            out = _out_tensor(out, z.shape)
            _check(getattr(_L(), name)(self._p, z._p, tau._p,
                                       labels._p if labels is not None else None, out._p))
            return out
        finally:
            for t in owned:
                t.close()

    def backward(self, dout, dz=None):
        """Add dL/dparams into params' gradients; fill dz (a Tensor, True to
        allocate one, or None) with dL/dz and return it. Each backward needs
        a forward of its own: a backward uses up what its forward saved."""
        dout = _as_tensor(dout, "dout")
        if dz is True:
            dz = Tensor(dout.shape)
        dz = _as_tensor(dz, "dz", optional=True)
        _check(_L().cd_decoder_backward(self._p, dout._p, dz._p if dz is not None else None))
        return dz

    def _describe(self):
        return f"{self.kind.name.lower()}, {self.param_count} parameters" + \
            (", borrowed" if self.borrowed else "")


# --------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------

class Schedule(_Object):
    """beta_t and alpha-bar_t for t = 0..T (cd_schedule); made by the class
    methods linear, constant, constant_report, cosine, cosine_report,
    custom and from_arrays."""

    def __init__(self, *args, **kwargs):
        raise TypeError("make a Schedule with Schedule.linear(), .constant(), "
                        ".constant_report(), .cosine(), .cosine_report(), .custom() "
                        "or .from_arrays()")

    @classmethod
    def _make(cls, fn, *args):
        lib = _L()
        return cls._wrap(_new_handle(getattr(lib, fn), *args), lib.cd_schedule_free)

    @classmethod
    def linear(cls, T=1000, beta_min=1e-4, beta_max=0.02):
        return cls._make("cd_schedule_create_linear", _int64(T, "T"),
                         _real(beta_min, "beta_min"), _real(beta_max, "beta_max"))

    @classmethod
    def constant(cls, T, c):
        return cls._make("cd_schedule_create_constant", _int64(T, "T"), _real(c, "c"))

    @classmethod
    def linear_report(cls, T=1000, beta_min=1e-4, beta_max=0.02):
        """The report's linear schedule in its float32 arithmetic."""
        return cls._make("cd_schedule_create_linear_report", _int64(T, "T"),
                         _real(beta_min, "beta_min"), _real(beta_max, "beta_max"))

    @classmethod
    def constant_report(cls, T, c):
        return cls._make("cd_schedule_create_constant_report", _int64(T, "T"), _real(c, "c"))

    @classmethod
    def cosine(cls, T=1000, s=0.008, beta_clip=0.999):
        return cls._make("cd_schedule_create_cosine", _int64(T, "T"), _real(s, "s"),
                         _real(beta_clip, "beta_clip"))

    @classmethod
    def cosine_report(cls, T=1000):
        return cls._make("cd_schedule_create_cosine_report", _int64(T, "T"))

    @classmethod
    def custom(cls, betas):
        """From beta_1..beta_T."""
        src = _FloatSource(betas, "betas")
        if src.count < 1:
            raise ShapeError("betas: need at least one value", Status.SHAPE)
        return cls._make("cd_schedule_create_custom", src.addr, src.count)

    @classmethod
    def from_arrays(cls, betas, alpha_bars):
        """From both arrays verbatim, t = 0..T (T + 1 values each)."""
        b, a = _FloatSource(betas, "betas"), _FloatSource(alpha_bars, "alpha_bars")
        if b.count != a.count or b.count < 2:
            raise ShapeError(f"betas ({b.count}) and alpha_bars ({a.count}) need the same "
                             "length T + 1 >= 2", Status.SHAPE)
        return cls._make("cd_schedule_create_arrays", b.addr, a.addr, b.count - 1)

    @property
    def T(self):
        return int(_nonneg(_L().cd_schedule_T(self._p)))

    @property
    def kind(self):
        return ScheduleKind(_nonneg(_L().cd_schedule_get_kind(self._p)))

    def at(self, t):
        """(beta_t, alpha_bar_t) for 0 <= t <= T."""
        b, a = _f(), _f()
        _check(_L().cd_schedule_at(self._p, _int64(t, "t"), ctypes.byref(b), ctypes.byref(a)))
        return b.value, a.value

    def arrays(self):
        """(betas, alpha_bars): two array.array('f') of T + 1 values."""
        n = self.T + 1
        b, a = array.array("f", bytes(4 * n)), array.array("f", bytes(4 * n))
        _check(_L().cd_schedule_copy_arrays(self._p, b.buffer_info()[0], a.buffer_info()[0], n))
        return b, a

    def __len__(self):
        return self.T + 1

    def _describe(self):
        return f"{self.kind.name.lower()}, T={self.T}"


# --------------------------------------------------------------------------
# Degradations
# --------------------------------------------------------------------------

Prior = collections.namedtuple("Prior", "mean std jitter fitted")


class Degradation(_Object):
    """A degradation operator D(x, t) (cd_degradation), made by noise(),
    blur(), pixelate(), mask() or fade(). It copies what it needs from the
    schedule (and the mean image), which may be closed afterwards."""

    def __init__(self, *args, **kwargs):
        raise TypeError("make a Degradation with Degradation.noise(), .blur(), .pixelate(), "
                        ".mask() or .fade()")

    @classmethod
    def _make(cls, fn, schedule, *args):
        lib = _L()
        s = _expect(schedule, Schedule, "schedule")
        return cls._wrap(_new_handle(getattr(lib, fn), s, *args), lib.cd_degradation_free)

    @classmethod
    def noise(cls, schedule):
        return cls._make("cd_degradation_create_noise", schedule)

    @classmethod
    def blur(cls, schedule, kernel_size=11, padding="reflect"):
        return cls._make("cd_degradation_create_blur", schedule, _int64(kernel_size, "kernel_size"),
                         int(_enum(Padding, padding, "padding")))

    @classmethod
    def pixelate(cls, schedule):
        return cls._make("cd_degradation_create_pixelate", schedule)

    @classmethod
    def mask(cls, schedule, edge_width=1.0):
        return cls._make("cd_degradation_create_mask", schedule, _real(edge_width, "edge_width"))

    @classmethod
    def fade(cls, schedule, mean_image):
        m = _expect(mean_image, Tensor, "mean_image")
        return cls._make("cd_degradation_create_fade", schedule, m)

    @property
    def kind(self):
        return DegradationKind(_nonneg(_L().cd_degradation_get_kind(self._p)))

    @property
    def target(self):
        return Target(_nonneg(_L().cd_degradation_get_target(self._p)))

    @property
    def T(self):
        return int(_nonneg(_L().cd_degradation_T(self._p)))

    def schedule_arrays(self):
        """(betas, alpha_bars) of the operator's schedule: two
        array.array('f') of T + 1 values (cd_degradation_copy_schedule)."""
        n = self.T + 1
        b, a = array.array("f", bytes(4 * n)), array.array("f", bytes(4 * n))
        _check(_L().cd_degradation_copy_schedule(self._p, b.buffer_info()[0],
                                                 a.buffer_info()[0], n))
        return b, a

    def apply(self, x, t, rng=None, out=None, eps=None):
        """z = D(x, t) per sample. x: N x C x H x W; t: one int for all or N
        ints; rng is needed by the noise operator, whose noise goes into eps
        (a Tensor, True to allocate, or None). Returns z, or (z, eps) when
        eps is asked for."""
        x = _as_tensor(x, "x")
        n = x.shape[0]
        if isinstance(t, int) and not isinstance(t, bool):
            ts = [_int64(t, "t")] * n
            arr, nt = (_i64 * n)(*ts), n
        else:
            arr, nt = _i64_array(t, "t")
        if nt != n:
            raise ShapeError(f"t: {nt} steps for {n} samples", Status.SHAPE)
        r = _expect(rng, Rng, "rng", optional=True)
        z = _out_tensor(out, x.shape)
        want_eps = eps is not None and eps is not False
        if eps is True:
            e = Tensor(x.shape)
        else:
            e = _as_tensor(eps, "eps", optional=True) if want_eps else None
        _check(_L().cd_degradation_apply(self._p, x._p, arr, nt, r, z._p,
                                         e._p if e is not None else None))
        return (z, e) if want_eps else z

    def fit_prior(self, dataset, split="train", max_images=0):
        _check(_L().cd_degradation_fit_prior(self._p, _expect(dataset, Dataset, "dataset"),
                                             int(_enum(Split, split, "split")),
                                             _int64(max_images, "max_images")))

    def set_prior(self, mean, std, jitter):
        _check(_L().cd_degradation_set_prior(self._p, _real(mean, "mean"), _real(std, "std"),
                                             _real(jitter, "jitter")))

    @property
    def prior(self):
        """Prior(mean, std, jitter, fitted)."""
        m, s, j, f = _d(), _d(), _d(), _i32()
        _check(_L().cd_degradation_get_prior(self._p, ctypes.byref(m), ctypes.byref(s),
                                             ctypes.byref(j), ctypes.byref(f)))
        return Prior(m.value, s.value, j.value, bool(f.value))

    def get_prior(self):
        return self.prior

    def sample_prior(self, rng, out):
        """Draw z_T into out (a Tensor, or a shape to allocate); returns it."""
        r = _expect(rng, Rng, "rng")
        if out is None:
            raise TypeError("out: expected a Tensor or a shape, not None")
        z = _out_tensor(out, None)
        _check(_L().cd_degradation_sample_prior(self._p, r, z._p))
        return z

    def _describe(self):
        return f"{self.kind.name.lower()}, T={self.T}" + (", borrowed" if self.borrowed else "")


# --------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------

class Dataset(_Object):
    """Images in memory with train, validation and test splits (cd_dataset);
    made by Dataset.load_mnist(dir), Dataset.load_idx(...) or
    Dataset.load_folder(dir)."""

    def __init__(self, *args, **kwargs):
        raise TypeError("make a Dataset with Dataset.load_mnist(), Dataset.load_idx() "
                        "or Dataset.load_folder()")

    @classmethod
    def load_mnist(cls, directory):
        lib = _L()
        return cls._wrap(_new_handle(lib.cd_dataset_load_mnist, _path(directory, "directory")),
                         lib.cd_dataset_free)

    @classmethod
    def load_idx(cls, train_images, train_labels, test_images=None, test_labels=None):
        if (test_images is None) != (test_labels is None):
            raise InvalidArgumentError("test_images and test_labels go together",
                                       Status.INVALID_ARGUMENT)
        lib = _L()
        return cls._wrap(_new_handle(lib.cd_dataset_load_idx,
                                     _path(train_images, "train_images"),
                                     _path(train_labels, "train_labels"),
                                     _path(test_images, "test_images", True),
                                     _path(test_labels, "test_labels", True)),
                         lib.cd_dataset_free)

    @classmethod
    def load_folder(cls, directory, channels=0, crop=0):
        """A folder of PNG images (docs/datasets.md): sub-folders are classes.
        channels is 1, 3 or 0 (the first image's); crop > 0 centre-crops
        every image to crop x crop."""
        lib = _L()
        return cls._wrap(_new_handle(lib.cd_dataset_load_folder, _path(directory, "directory"),
                                     _int_arg(channels, "channels", 0, 3),
                                     _int_arg(crop, "crop", 0, _I64_MAX)),
                         lib.cd_dataset_free)

    @property
    def class_count(self):
        """Named classes: the class folders, 10 for MNIST, 0 when unnamed."""
        return int(_nonneg(_L().cd_dataset_class_count(self._p)))

    def class_name(self, k):
        """The name of class k (label value k)."""
        s = _L().cd_dataset_class_name(self._p, _int64(k, "k"))
        if s is None:
            _raise_last()
        return os.fsdecode(s)

    @property
    def class_names(self):
        """All class names, in label order."""
        return [self.class_name(k) for k in range(self.class_count)]

    def split(self, val_fraction, seed=0):
        _check(_L().cd_dataset_split(self._p, _real(val_fraction, "val_fraction"),
                                     _uint64(seed, "seed")))

    def truncate(self, split, n):
        """Keep only the first n images of a split (natural order)."""
        _check(_L().cd_dataset_truncate(self._p, int(_enum(Split, split, "split")),
                                        _int64(n, "n")))

    def split_from_file(self, path):
        _check(_L().cd_dataset_split_from_file(self._p, _path(path)))

    def count(self, split="train"):
        return int(_nonneg(_L().cd_dataset_count(self._p, int(_enum(Split, split, "split")))))

    def __len__(self):
        return self.count("train")

    @property
    def height(self):
        return int(_nonneg(_L().cd_dataset_height(self._p)))

    @property
    def width(self):
        return int(_nonneg(_L().cd_dataset_width(self._p)))

    @property
    def channels(self):
        return int(_nonneg(_L().cd_dataset_channels(self._p)))

    @property
    def image_shape(self):
        """(C, H, W)."""
        return self.channels, self.height, self.width

    def shuffle(self, split, rng):
        _check(_L().cd_dataset_shuffle(self._p, int(_enum(Split, split, "split")),
                                       _expect(rng, Rng, "rng")))

    def fill_batch(self, split, first, images, labels=None):
        """Fill images (N x C x H x W) and optionally labels (N floats) from
        epoch position `first`; returns how many rows are real."""
        images = _as_tensor(images, "images")
        labels = _as_tensor(labels, "labels", optional=True)
        got = _i64()
        _check(_L().cd_dataset_fill_batch(self._p, int(_enum(Split, split, "split")),
                                          _int64(first, "first"), images._p,
                                          labels._p if labels is not None else None,
                                          ctypes.byref(got)))
        return got.value

    def batch(self, split, first, n):
        """New tensors (images N x C x H x W, labels N) filled from `first`;
        returns (images, labels, filled)."""
        n = _int64(n, "n")
        images = Tensor((n,) + self.image_shape)
        labels = Tensor((n,))
        return images, labels, self.fill_batch(split, first, images, labels)

    def gather(self, split, indices, images=None, labels=None):
        """The images (and labels) at split indices (natural order); returns
        (images, labels). images/labels: Tensors to fill, or None to
        allocate (labels=False: no labels)."""
        arr, n = _i64_array(indices, "indices")
        if n < 1:
            raise RangeError("indices: need at least one index", Status.RANGE)
        images = _out_tensor(images, (n,) + self.image_shape, "images")
        if labels is False:
            labels = None
        else:
            labels = _out_tensor(labels, (n,), "labels")
        _check(_L().cd_dataset_gather(self._p, int(_enum(Split, split, "split")), arr, n,
                                      images._p, labels._p if labels is not None else None))
        return images, labels

    def mean_image(self, split="train", out=None):
        """The mean image of a split (C x H x W), the fade operator's m."""
        out = _out_tensor(out, self.image_shape)
        _check(_L().cd_dataset_mean_image(self._p, int(_enum(Split, split, "split")), out._p))
        return out

    def _describe(self):
        return (f"{self.channels}x{self.height}x{self.width}, train={self.count('train')}, "
                f"val={self.count('val')}, test={self.count('test')}")


# --------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------

class Trainer(_Configurable, _Object):
    """A decoder, the degradation it learns to undo and Adam (cd_trainer).

    Trainer(decoder, degradation, **options) borrows both, as
    cd_trainer_create does: the trainer keeps them alive as long as it lives
    (closing your objects before it is safe), and they stay yours. A loaded
    trainer (Trainer.load) owns its own. trainer.decoder and
    trainer.degradation are borrowed views that keep the trainer alive.
    Options are the TrainerOption keys (see _Configurable):
    Trainer(dec, deg, lr=1e-3, batch=64), tr["batch"] = 64,
    tr.get(TrainerOption.LR), tr.option_info("loss")."""
    _options = _TRAINER_OPTIONS

    def __init__(self, decoder, degradation, **options):
        d = _expect(decoder, Decoder, "decoder")
        g = _expect(degradation, Degradation, "degradation")
        lib = _L()
        ref = _Ref(_new_handle(lib.cd_trainer_create, d, g), lib.cd_trainer_free)
        # Borrowed: the C trainer is freed before the decoder and the
        # degradation, whoever closes what first.
        try:
            ref.adopt(decoder._ref)
            ref.adopt(degradation._ref)
        except BaseException:
            ref.release()
            raise
        self._ref = ref
        self._fitting = False
        try:
            self.configure(**options)
        except BaseException:
            self.close()
            raise

    @classmethod
    def load(cls, path, rng=None):
        """Load a trainer saved by save(); restores rng's state if given.
        The loaded trainer owns its decoder and degradation."""
        lib = _L()
        r = _expect(rng, Rng, "rng", optional=True)
        self = cls._wrap(_new_handle(lib.cd_trainer_load, _path(path), r), lib.cd_trainer_free)
        self._fitting = False
        return self

    def save(self, path, rng=None):
        _check(_L().cd_trainer_save(self._p, _path(path), _expect(rng, Rng, "rng", optional=True)))

    def export(self, path):
        """Write the inference model file (cd_trainer_export): decoder (EMA
        weights when the trainer keeps an EMA) and degradation, no
        optimiser state. Load it with load_model()."""
        _check(_L().cd_trainer_export(self._p, _path(path)))

    @property
    def decoder(self):
        """The trainer's decoder, borrowed (keeps the trainer alive)."""
        p = _L().cd_trainer_decoder(self._p)
        if not p:
            _raise_last()
        return Decoder._wrap(p, None, self._ref)

    @property
    def degradation(self):
        """The trainer's degradation, borrowed (keeps the trainer alive)."""
        p = _L().cd_trainer_degradation(self._p)
        if not p:
            _raise_last()
        return Degradation._wrap(p, None, self._ref)

    @property
    def steps(self):
        return int(_nonneg(_L().cd_trainer_steps(self._p)))

    def copy_ema(self):
        """Overwrite the decoder's weights with their EMA (ema.copy_to)."""
        _check(_L().cd_trainer_copy_ema(self._p))

    def swap_ema(self):
        """Exchange the decoder's weights with their EMA; a second call puts
        the training weights back (cd_trainer_swap_ema)."""
        _check(_L().cd_trainer_swap_ema(self._p))

    @property
    def ema_swapped(self):
        """True while swap_ema() has the EMA in the decoder."""
        return bool(_nonneg(_L().cd_trainer_ema_swapped(self._p)))

    @contextlib.contextmanager
    def ema_weights(self):
        """`with tr.ema_weights(): ...` samples or evaluates the EMA, and
        the training weights come back on leaving, error or not."""
        self.swap_ema()
        try:
            yield self
        finally:
            self.swap_ema()

    def step(self, images, rng, labels=None):
        """One optimiser step on a batch (N x C x H x W); returns the loss.
        labels: for a class-conditional decoder, the N images' classes (a
        Tensor or a sequence; -1 for none), each dropped to "no class" at
        the label_dropout rate (cd_trainer_step_labeled)."""
        loss = _d()
        own = None
        if labels is not None and not isinstance(labels, Tensor):
            labels = own = _labels_tensor(labels)
        try:
            _check(_L().cd_trainer_step_labeled(
                self._p, _expect(images, Tensor, "images"),
                labels._p if labels is not None else None, _expect(rng, Rng, "rng"),
                ctypes.byref(loss)))
        finally:
            if own is not None:
                own.close()
        return loss.value

    def set_distributed(self, rank, world, sum_fn=None):
        """Make this trainer rank `rank` of `world` training data-parallel
        (cd_trainer_set_distributed). sum_fn(op, data, count) sums `count`
        floats at address `data` over the ranks in place for
        ReduceOp.START (POLL and WAIT may do nothing for a blocking sum);
        every rank passes the same global batch to step(). world=1 with no
        sum_fn makes it a single process again."""
        r, w = _int64(rank, "rank"), _int64(world, "world")
        if sum_fn is not None and not callable(sum_fn):
            raise TypeError(f"sum_fn: expected a callable, not {type(sum_fn).__name__}")
        cb = _ALLREDUCE_FN()  # NULL
        if sum_fn is not None:
            def trampoline(op, data, count, user):
                try:
                    sum_fn(ReduceOp(op), data, count)
                    return Status.OK
                except Exception:  # noqa: B902 - the trainer reports the failed sum
                    return Status.IO
            cb = _ALLREDUCE_FN(trampoline)
        _check(_L().cd_trainer_set_distributed(self._p, r, w, cb, None))
        self._sum_fn = cb  # the C side keeps calling it

    @property
    def distributed(self):
        """(rank, world): (0, 1) for a single process."""
        r, w = _i64(), _i64()
        _check(_L().cd_trainer_get_distributed(self._p, ctypes.byref(r), ctypes.byref(w)))
        return r.value, w.value

    def eval_loss(self, dataset, split="val", rng=None):
        loss = _d()
        _check(_L().cd_trainer_eval_loss(self._p, _expect(dataset, Dataset, "dataset"),
                                         int(_enum(Split, split, "split")),
                                         _expect(rng, Rng, "rng"), ctypes.byref(loss)))
        return loss.value

    def test_loss(self, dataset, split="test", rng=None):
        """(mean, std_error) of the per-image training objective over a
        split (natural order, fresh t and noise from rng)."""
        mean, se = _d(), _d()
        _check(_L().cd_trainer_test_loss(self._p, _expect(dataset, Dataset, "dataset"),
                                         int(_enum(Split, split, "split")),
                                         _expect(rng, Rng, "rng"), ctypes.byref(mean),
                                         ctypes.byref(se)))
        return mean.value, se.value

    def progress(self, key=None):
        """One progress value (a ProgressKey or name), or all as a dict.
        Safe from any thread, also while fit() runs."""
        lib = _L()
        if key is None:
            return {k.name.lower(): self.progress(k) for k in ProgressKey}
        k = _enum(ProgressKey, key, "key")
        v = _d()
        with _Hold(self):
            _check(lib.cd_trainer_progress(self._p, int(k), ctypes.byref(v)))
        return v.value

    def request_stop(self):
        """Ask a running fit() (e.g. from another thread) to stop after its
        current batch; a request made while no fit runs stops the next one
        before its first batch."""
        with _Hold(self):
            _L().cd_trainer_request_stop(self._p)

    def fit(self, dataset, epochs, rng, best_path=None, last_path=None, on_epoch=None):
        """Train until `epochs` epochs are complete in total.

        on_epoch(trainer, epoch, train_loss, val_loss) is called after each
        epoch; returning False stops the fit (an exception does too, and is
        re-raised here). Returns True when all epochs completed, False when
        the fit stopped on request (request_stop() or on_epoch). The GIL is
        released while C trains, so other threads may poll progress().

        Called from the main thread, the C loop runs in a helper thread (and
        on_epoch with it) while the main thread waits, so that Ctrl-C works:
        it requests a stop, the fit ends after its batch (writing last_path)
        and KeyboardInterrupt is raised here."""
        ds = _expect(dataset, Dataset, "dataset")
        r = _expect(rng, Rng, "rng")
        n = _int64(epochs, "epochs")
        best, last = _path(best_path, "best_path", True), _path(last_path, "last_path", True)
        if on_epoch is not None and not callable(on_epoch):
            raise TypeError(f"on_epoch: expected a callable, not {type(on_epoch).__name__}")
        if getattr(self, "_fitting", False):
            raise StateError("fit() is already running on this trainer", Status.STATE)
        caught = []
        cb = _EPOCH_FN()  # NULL
        if on_epoch is not None:
            def trampoline(tr, epoch, train_loss, val_loss, user):
                try:
                    go = on_epoch(self, epoch, train_loss, val_loss)
                    return Status.CANCELLED if go is False else Status.OK
                except BaseException as e:  # noqa: B902 - re-raised after the call
                    caught.append(e)
                    return e.status if isinstance(e, ColddiffError) and \
                        isinstance(e.status, int) and e.status < 0 else Status.CANCELLED
            cb = _EPOCH_FN(trampoline)
        self._fitting = True
        ptr, lib = self._p, _L()
        try:
            st, msg = _call_c((self, dataset, rng),
                              lambda: lib.cd_trainer_fit(ptr, ds, n, best, last, r, cb, None),
                              on_interrupt=lambda: lib.cd_trainer_request_stop(ptr))
        finally:
            self._fitting = False
        if caught:
            raise caught[0]
        if st == Status.CANCELLED:
            return False
        if st != 0:
            raise _error(st, msg or status_string(st))
        return True

    def _describe(self):
        return f"{self.steps} steps"


def save_model(path, decoder, degradation, weights="float32"):
    """Write an inference model file (cd_model_save_as): the decoder's
    weights and the degradation with its schedule, no optimiser state.
    weights: "float32" (exact) or "float16" (rounded to half precision,
    about half the file)."""
    d = _expect(decoder, Decoder, "decoder")
    g = _expect(degradation, Degradation, "degradation")
    fmt = _enum(WeightFormat, weights, "weights")
    _check(_L().cd_model_save_as(_path(path), d, g, int(fmt)))


def load_model(path=None):
    """(Decoder, Degradation) from an inference model or a training
    checkpoint (its EMA weights when it kept an EMA): cd_model_load.
    Without a path, the pretrained MNIST model that ships with the library
    (cd_model_load_default; $COLDDIFF_MODEL overrides where it is found)."""
    lib = _L()
    dec, deg = _p(), _p()
    if path is None:
        _check(lib.cd_model_load_default(ctypes.byref(dec), ctypes.byref(deg)))
    else:
        _check(lib.cd_model_load(_path(path), ctypes.byref(dec), ctypes.byref(deg)))
    return (Decoder._wrap(dec.value, lib.cd_decoder_free),
            Degradation._wrap(deg.value, lib.cd_degradation_free))


# --------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------

Restoration = collections.namedtuple("Restoration", "out snap_z snap_xhat snap_fwd")



class Sampler(_Configurable, _Object):
    """A reverse chain (cd_sampler) of `kind` ("ddpm", "ddim", "cold1",
    "cold2", "direct") for a degradation, driven by a Decoder
    (set_decoder) or a Python callable (set_predictor). The sampler keeps
    its degradation and decoder alive. Options are the SamplerOption keys
    (see _Configurable): Sampler("ddim", deg, steps=50, eta=0.0),
    s["clip"] = False."""
    _options = _SAMPLER_OPTIONS

    def __init__(self, kind, degradation, **options):
        k = _enum(SamplerKind, kind, "kind")
        g = _expect(degradation, Degradation, "degradation")
        lib = _L()
        ptr = _new_handle(lib.cd_sampler_create, int(k), g)
        self._ref = _Ref(ptr, lib.cd_sampler_free)
        self._ref.keep = {}
        self._ref.adopt(degradation._ref)  # released after the sampler is freed
        self._predictor = None
        # One run's state, shared by the predictor and progress trampolines:
        # exceptions they caught, and the Ctrl-C flag that cancels the chain
        # between steps even when a C decoder drives it.
        self._state = {"caught": [], "stop": False, "progress": None}
        state = self._state

        def progress(step, steps, user):
            if state["stop"]:
                return int(Status.CANCELLED)
            fn = state["progress"]
            if fn is None:
                return Status.OK
            try:
                return int(Status.CANCELLED) if fn(step, steps) is False else Status.OK
            except BaseException as e:  # noqa: B902 - re-raised after the call
                state["caught"].append(e)
                return int(Status.CANCELLED)
        self._progress_cb = _SAMPLER_PROGRESS_FN(progress)
        _check(lib.cd_sampler_set_progress(ptr, self._progress_cb, None))
        self._ref.keep["progress"] = self._progress_cb
        try:
            self.configure(**options)
        except BaseException:
            self.close()
            raise

    def _set_driver(self, decoder=None, callback=None):
        """Record what drives the chain: the decoder's memory (or the ctypes
        callback) stays alive until it is replaced or the sampler is freed."""
        r = self._ref
        old = r.keep.pop("decoder", None)
        r.keep.pop("callback", None)
        if decoder is not None:
            r.adopt(decoder._ref)
            r.keep["decoder"] = decoder._ref
        if callback is not None:
            r.keep["callback"] = callback
        if old is not None:
            r.drop(old)

    @property
    def kind(self):
        return SamplerKind(_nonneg(_L().cd_sampler_get_kind(self._p)))

    def set_decoder(self, decoder):
        """Drive the chain with a Decoder (kept alive); None removes it."""
        d = _expect(decoder, Decoder, "decoder", optional=True)
        _check(_L().cd_sampler_set_decoder(self._p, d))
        self._set_driver(decoder=decoder)
        self._predictor = None

    def set_labels(self, labels, guidance=None):
        """Sample images of these classes (one per image of the batch, -1
        for none; a Tensor or a sequence) with a class-conditional decoder,
        mixing its conditional and unconditional outputs with guidance w
        (0: unconditional, 1: plain conditional; None keeps the option's
        value). None forgets the labels (cd_sampler_set_labels)."""
        own = None
        if labels is not None and not isinstance(labels, Tensor):
            labels = own = _labels_tensor(labels)
        try:
            _check(_L().cd_sampler_set_labels(self._p, labels._p if labels is not None else None))
        finally:
            if own is not None:
                own.close()
        if guidance is not None:
            self.set("guidance", guidance)

    def set_progress(self, fn):
        """Call fn(step, steps) after each step of the chain (a progress bar);
        fn returning False, or raising, stops the chain (the exception is
        re-raised by sample()/restore(), False gives CancelledError). None
        removes it. Ctrl-C stops a running chain between steps either way."""
        if fn is not None and not callable(fn):
            raise TypeError(f"fn: expected a callable, not {type(fn).__name__}")
        self._state["progress"] = fn

    def set_predictor(self, fn):
        """Drive the chain with fn(z, tau, out): z (N x C x H x W) and tau (N
        values of t/T) are Tensors to read, out a Tensor to fill with eps-hat
        or x-hat (see degradation.target). fn may instead return the
        prediction (a Tensor, buffer, numpy array or sequence), which is
        copied into out. The three Tensors are valid only during the call.
        An exception stops the chain and is re-raised by sample()/restore().
        None removes the predictor."""
        if fn is None:
            _check(_L().cd_sampler_set_predictor(self._p, _PREDICTOR_FN(), None))
            self._set_driver()
            self._predictor = None
            return
        if not callable(fn):
            raise TypeError(f"fn: expected a callable, not {type(fn).__name__}")
        state = self._state

        def trampoline(z, tau, out, user):
            if state["stop"]:  # Ctrl-C in the waiting main thread
                return int(Status.CANCELLED)
            views = [Tensor._borrow(z), Tensor._borrow(tau), Tensor._borrow(out)]
            try:
                res = fn(*views)
                if res is not None and res is not views[2]:
                    views[2].copy_from(res)
                return Status.OK
            except BaseException as e:  # noqa: B902 - re-raised after the call
                state["caught"].append(e)
                if isinstance(e, ColddiffError) and isinstance(e.status, int) and e.status < 0:
                    return int(e.status)
                return int(Status.CANCELLED)
            finally:
                for v in views:  # invalidate: the memory belongs to the chain
                    v._closed_why = "a predictor's tensors are valid only during the call"
                    v.close()
        cb = _PREDICTOR_FN(trampoline)
        _check(_L().cd_sampler_set_predictor(self._p, cb, None))
        self._set_driver(callback=cb)
        self._predictor = (fn, cb, state)

    def step_times(self, t_start):
        """The times the chain calls the predictor at, from t_start."""
        lib = _L()
        n = _i64()
        t0 = _int64(t_start, "t_start")
        st = lib.cd_sampler_step_times(self._p, t0, None, 0, ctypes.byref(n))
        if st not in (Status.OK, Status.SHAPE) or n.value < 0:
            _check(st)
        buf = (_i64 * max(n.value, 1))()
        _check(lib.cd_sampler_step_times(self._p, t0, buf, n.value, ctypes.byref(n)))
        return list(buf[: n.value])

    def _run(self, fn, objs):
        state = self._state
        state["caught"] = []
        state["stop"] = False
        st, msg = _call_c((self,) + tuple(objs), fn,
                          on_interrupt=lambda: state.__setitem__("stop", True))
        if state["caught"]:
            exc = state["caught"][0]
            state["caught"] = []
            if hasattr(exc, "add_note") and msg:
                exc.add_note(f"libcolddiff: {msg}")
            raise exc
        if st != 0:
            raise _error(st, msg or status_string(st))

    def sample(self, rng, out):
        """Unconditional sampling into out (a Tensor, or a shape such as
        (16, 1, 28, 28) to allocate); returns out."""
        r = _expect(rng, Rng, "rng")
        if out is None:
            raise TypeError("out: expected a Tensor or a shape, not None")
        out = _out_tensor(out, None)
        self._run(lambda: _L().cd_sampler_sample(self._p, r, out._p), (rng, out))
        return out

    def restore(self, x, t_start, rng=None, out=None, snap_times=None,
                snap_z=None, snap_xhat=None, snap_fwd=None):
        """Conditional restoration: z = D(x, t_start), then the chain to 0.
        Returns Restoration(out, snap_z, snap_xhat, snap_fwd); each snapshot
        argument is a Tensor (len(snap_times) x N x C x H x W), True to
        allocate one, or None for none."""
        x = _as_tensor(x, "x")
        t0 = _int64(t_start, "t_start")
        r = _expect(rng, Rng, "rng", optional=True)
        out = _out_tensor(out, x.shape)
        times, n = (None, 0)
        if snap_times is not None:
            times, n = _i64_array(snap_times, "snap_times")
        snaps = []
        for name, s in (("snap_z", snap_z), ("snap_xhat", snap_xhat), ("snap_fwd", snap_fwd)):
            if s is True:
                if n == 0:
                    raise InvalidArgumentError(f"{name}: needs snap_times",
                                               Status.INVALID_ARGUMENT)
                s = Tensor((n,) + x.shape)
            elif s is False:
                s = None
            snaps.append(_as_tensor(s, name, optional=True))
        ptrs = [s._p if s is not None else None for s in snaps]
        self._run(lambda: _L().cd_sampler_restore(self._p, x._p, t0, r, out._p,
                                                  times if n else None, n, *ptrs),
                  (x, rng, out) + tuple(snaps))
        return Restoration(out, *snaps)

    def _describe(self):
        return self.kind.name.lower()


# --------------------------------------------------------------------------
# Classifier
# --------------------------------------------------------------------------

class Classifier(_Configurable, _Object):
    """The small MNIST CNN classifier (cd_classifier) whose features feed the
    Frechet distance and whose probabilities feed class preservation.

        Classifier(rng, **options)  # fresh weights
        Classifier.load(path)       # a saved one
        Classifier.load_default()   # the shipped, frozen one

    Its training options are the ClassifierOption keys (batch, lr,
    max_shift; see _Configurable). They belong to the object, not to its
    file: a loaded classifier starts from the defaults."""
    _options = _CLASSIFIER_OPTIONS

    def __init__(self, rng, **options):
        r = _expect(rng, Rng, "rng")
        lib = _L()
        self._ref = _Ref(_new_handle(lib.cd_classifier_create, r), lib.cd_classifier_free)
        try:
            self.configure(**options)
        except BaseException:
            self.close()
            raise

    @classmethod
    def load(cls, path):
        lib = _L()
        return cls._wrap(_new_handle(lib.cd_classifier_load, _path(path)), lib.cd_classifier_free)

    @classmethod
    def load_default(cls):
        """The shipped classifier ($COLDDIFF_CLASSIFIER, else the installed
        or source-tree copy)."""
        lib = _L()
        return cls._wrap(_new_handle(lib.cd_classifier_load_default), lib.cd_classifier_free)

    def save(self, path):
        _check(_L().cd_classifier_save(self._p, _path(path)))

    @property
    def feature_dim(self):
        return int(_nonneg(_L().cd_classifier_feature_dim(self._p)))

    @property
    def num_classes(self):
        return int(_nonneg(_L().cd_classifier_num_classes(self._p)))

    @property
    def steps(self):
        return int(_nonneg(_L().cd_classifier_steps(self._p)))

    @property
    def epochs(self):
        return int(_nonneg(_L().cd_classifier_epochs(self._p)))

    @property
    def params(self):
        """The weights by name (borrowed: keeps the classifier alive)."""
        p = _L().cd_classifier_params(self._p)
        if not p:
            _raise_last()
        return Params._wrap(p, None, self._ref)

    def predict(self, images, probs=True, features=False):
        """(probs, features) of N images (N x 1 x H x W or N x H x W): probs
        N x K, features N x F. Each is a Tensor to fill, True to allocate,
        or False/None for none (at least one)."""
        images = _as_tensor(images, "images")
        n = images.shape[0]
        outs = []
        for name, o in (("probs", probs), ("features", features)):
            if o is True:
                o = Tensor((n, self.num_classes if name == "probs" else self.feature_dim))
            elif o is False:
                o = None
            outs.append(_as_tensor(o, name, optional=True))
        _check(_L().cd_classifier_predict(self._p, images._p,
                                          *[o._p if o is not None else None for o in outs]))
        return tuple(outs)

    def probabilities(self, images):
        return self.predict(images, True, False)[0]

    def features(self, images):
        return self.predict(images, False, True)[1]

    def train_step(self, images, labels, lr=None):
        """One Adam step on a batch at the option lr (set first when given);
        returns the batch's loss before the step."""
        imgs = _expect(images, Tensor, "images")
        labs = _expect(labels, Tensor, "labels")
        if lr is not None:
            self.set(ClassifierOption.LR, lr)
        loss = _d()
        _check(_L().cd_classifier_train_step(self._p, imgs, labs, ctypes.byref(loss)))
        return loss.value

    def train(self, dataset, epochs, rng, batch=None, lr=None, max_shift=None, on_epoch=None):
        """Train on the train split (cd_classifier_train). batch, lr and
        max_shift, when given, are set as the classifier's options first (and
        stay set); None keeps the current ones. on_epoch(classifier, epoch,
        train_loss) after each epoch (False stops; an exception stops and is
        re-raised). Returns True when all epochs ran, False when stopped by
        on_epoch. Ctrl-C (from the main thread) stops at the next epoch end."""
        ds, r = _expect(dataset, Dataset, "dataset"), _expect(rng, Rng, "rng")
        n = _int64(epochs, "epochs")
        if on_epoch is not None and not callable(on_epoch):
            raise TypeError(f"on_epoch: expected a callable, not {type(on_epoch).__name__}")
        self.configure(**{k: v for k, v in (("batch", batch), ("lr", lr),
                                            ("max_shift", max_shift)) if v is not None})
        caught, stop = [], []

        def trampoline(c, epoch, train_loss, user):
            if stop:
                return int(Status.CANCELLED)
            if on_epoch is None:
                return int(Status.OK)
            try:
                return int(Status.CANCELLED) if on_epoch(self, epoch, train_loss) is False \
                    else int(Status.OK)
            except BaseException as e:  # noqa: B902 - re-raised after the call
                caught.append(e)
                return int(Status.CANCELLED)
        cb = _CLASSIFIER_EPOCH_FN(trampoline)
        ptr, lib = self._p, _L()
        st, msg = _call_c((self, dataset, rng),
                          lambda: lib.cd_classifier_train(ptr, ds, n, r, cb, None),
                          on_interrupt=lambda: stop.append(True))
        if caught:
            raise caught[0]
        if st == Status.CANCELLED:
            return False
        if st != 0:
            raise _error(st, msg or status_string(st))
        return True

    def accuracy(self, dataset, split="test"):
        """(accuracy, correct) on a split."""
        acc, correct = _d(), _i64()
        _check(_L().cd_classifier_accuracy(self._p, _expect(dataset, Dataset, "dataset"),
                                           int(_enum(Split, split, "split")), ctypes.byref(acc),
                                           ctypes.byref(correct)))
        return acc.value, correct.value

    def _describe(self):
        return f"{self.num_classes} classes, {self.feature_dim} features, {self.steps} steps"


# --------------------------------------------------------------------------
# Images and metrics (module functions)
# --------------------------------------------------------------------------

def write_png_gray(path, pixels, height, width):
    """An 8-bit greyscale PNG of height rows of width bytes (bytes-like),
    row-major; the height comes first, as in cd_png_write_gray."""
    h, w = _int64(height, "height"), _int64(width, "width")
    try:
        mv = memoryview(pixels)
    except TypeError:
        raise TypeError(f"pixels: expected a bytes-like object, not {type(pixels).__name__}") \
            from None
    data = mv.tobytes()
    if w < 1 or h < 1 or len(data) != w * h:
        raise ShapeError(f"pixels: {len(data)} bytes for an image of {h} rows of {w}",
                         Status.SHAPE)
    buf = ctypes.create_string_buffer(data, len(data))
    _check(_L().cd_png_write_gray(_path(path), buf, h, w))


def write_image_grid(path, images, columns=8, border=2, border_value=0,
                     pixel_map="range", lo=-0.5, hi=0.5):
    """A PNG grid of the N images of images (N x C x H x W or N x H x W),
    greyscale for C = 1 and RGB for C = 3; pixel_map "range" maps [lo, hi]
    to 0..255, "percentile" clips each image (all its channels together) to
    its 1st..99th percentiles."""
    t = _expect(images, Tensor, "images")
    _check(_L().cd_image_grid_write_png(
        _path(path), t, _int64(columns, "columns"), _int64(border, "border"),
        _int32(border_value, "border_value"), int(_enum(PixelMap, pixel_map, "pixel_map")),
        _real(lo, "lo"), _real(hi, "hi")))


ImageMetrics = collections.namedtuple("ImageMetrics", "rmse ssim psnr reduction")


def enum_name(member):
    """The library's name for a member of one of NAMED_ENUMS' classes, as
    the command line and checkpoints spell it (cd_enum_name)."""
    kind = NAMED_ENUMS.get(type(member))
    if kind is None:
        raise TypeError(f"enum_name: expected a member of {', '.join(c.__name__ for c in NAMED_ENUMS)}, "
                        f"not {type(member).__name__}")
    s = _L().cd_enum_name(int(kind), int(member))
    if s is None:
        _raise_last()
    return s.decode("ascii")


def enum_parse(cls, name):
    """The member of cls (one of NAMED_ENUMS' classes) the library names
    `name` (cd_enum_parse; exact match, e.g. "constant-report")."""
    kind = NAMED_ENUMS.get(cls)
    if kind is None:
        raise TypeError(f"enum_parse: {cls!r} is not one of NAMED_ENUMS' classes")
    value = ctypes.c_int32()
    _check(_L().cd_enum_parse(int(kind), str(name).encode("utf-8"), ctypes.byref(value)))
    return cls(value.value)


def metrics_normalize(x, out=None):
    """Min-max normalise each image of x (N x C x H x W) to [0, 1]."""
    x = _as_tensor(x, "x")
    out = _out_tensor(out, x.shape)
    _check(_L().cd_metrics_normalize(x._p, out._p))
    return out


def image_metrics(x, x_hat, reduction="per_image"):
    """ImageMetrics(rmse, ssim, psnr, reduction) of x_hat against x."""
    a, b = _expect(x, Tensor, "x"), _expect(x_hat, Tensor, "x_hat")
    r = _enum(Reduction, reduction, "reduction")
    rmse, ssim, psnr, used = _d(), _d(), _d(), _int()
    _check(_L().cd_metrics_images(a, b, int(r), ctypes.byref(rmse), ctypes.byref(ssim),
                                  ctypes.byref(psnr), ctypes.byref(used)))
    return ImageMetrics(rmse.value, ssim.value, psnr.value, Reduction(used.value))


def per_image_metrics(x, x_hat):
    """(mse, ssim, psnr): three lists with one value per image."""
    x = _as_tensor(x, "x")
    b = _expect(x_hat, Tensor, "x_hat")
    n = x.shape[0]
    mse, ssim, psnr = (_d * n)(), (_d * n)(), (_d * n)()
    _check(_L().cd_metrics_per_image(x._p, b, mse, ssim, psnr, n))
    return list(mse), list(ssim), list(psnr)


def feature_stats(features):
    """(mean, cov) of the rows of features (N x D): a list of D floats and
    a D x D list of lists (unbiased covariance)."""
    f = _as_tensor(features, "features")
    shp = f.shape
    if len(shp) != 2:
        raise ShapeError(f"features: expected N x D, got shape {shp}", Status.SHAPE)
    dim = shp[1]
    if dim > FD_MAX_DIM:
        raise RangeError(f"features: D = {dim} is above {FD_MAX_DIM}", Status.RANGE)
    mean, cov = (_d * dim)(), (_d * (dim * dim))()
    _check(_L().cd_feature_stats(f._p, mean, cov, dim))
    return list(mean), [list(cov[i * dim:(i + 1) * dim]) for i in range(dim)]


def frechet_distance(a, b):
    """The Frechet distance between feature sets a (N1 x D) and b (N2 x D)."""
    fd = _d()
    _check(_L().cd_frechet_distance(_expect(a, Tensor, "a"), _expect(b, Tensor, "b"),
                                    ctypes.byref(fd)))
    return fd.value


def frechet_distance_from_stats(mu1, cov1, mu2, cov2):
    """FD from means (D values) and covariances (D x D, nested or flat)."""
    m1, d1 = _f64_array(mu1, "mu1")
    m2, d2 = _f64_array(mu2, "mu2")
    c1, n1 = _f64_array(cov1, "cov1")
    c2, n2 = _f64_array(cov2, "cov2")
    if d1 < 1 or d1 != d2 or n1 != d1 * d1 or n2 != d1 * d1:
        raise ShapeError(f"means of {d1} and {d2} values need covariances of D x D; got "
                         f"{n1} and {n2} values", Status.SHAPE)
    fd = _d()
    _check(_L().cd_frechet_distance_from_stats(m1, c1, m2, c2, d1, ctypes.byref(fd)))
    return fd.value


def class_histogram(probs):
    """(hist, entropy, mean_confidence) of the rows of probs (N x K)."""
    p = _as_tensor(probs, "probs")
    shp = p.shape
    if len(shp) != 2:
        raise ShapeError(f"probs: expected N x K, got shape {shp}", Status.SHAPE)
    k = shp[1]
    hist, ent, conf = (_i64 * k)(), _d(), _d()
    _check(_L().cd_class_histogram(p._p, hist, k, ctypes.byref(ent), ctypes.byref(conf)))
    return list(hist), ent.value, conf.value


def class_preservation(probs, labels):
    """(fraction, matches): rows of probs whose argmax equals the label."""
    p = _expect(probs, Tensor, "probs")
    arr, n = _i64_array(labels, "labels")
    frac, matches = _d(), _i64()
    _check(_L().cd_class_preservation(p, arr, n, ctypes.byref(frac), ctypes.byref(matches)))
    return frac.value, matches.value
