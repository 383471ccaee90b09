"""Read and write libcolddiff checkpoint files (.cdm), standard library only.

The format is docs/checkpoint-format.md (version 1): a 56-byte header, then
one zlib stream holding a run of tagged sections. This module handles the
sections a model exchange needs and keeps the others intact:

    CONF  configuration entries   -> Checkpoint.conf    {key: value}
    TENS  named tensors           -> Checkpoint.tensors {name: Tensor}
    META  string metadata         -> Checkpoint.meta    {key: str}
    anything else (ADAM, EMAW, RNGS, STEP, later optional sections)
                                  -> Checkpoint.extra   [(tag, flags, payload)]

CONF values map to Python types one to one:
    int -> int64, float -> float64, str -> string,
    array('f') -> float32 array, array('q') -> int64 array.

Tensor data are array('f') in row-major order; `Tensor.shape` is a tuple.
Float16 tensors (an inference model saved with float16 weights) are read
as the floats they hold; tensors are always written as float32.
The extra sections are written back verbatim after TENS, so they stay
valid only while the tensors (their flat order and sizes) are unchanged.

Errors are CheckpointError, whose `kind` names the libcolddiff status the C
reader would give: "format", "checksum", "version" or "unsupported".
"""
import array
import binascii
import errno
import os
import stat
import struct
import sys
import tempfile
import zlib
from collections import namedtuple

MAGIC = b"\x89CDCKPT\n"
BYTE_ORDER_MARK = 0x01020304
FORMAT_VERSION = 1
COMPRESSION_ZLIB = 1
HEADER_SIZE = 56

MAX_BODY = 4 << 30          # CD__CKPT_MAX_BODY
MAX_RATIO = 1032            # deflate's largest compression ratio
MAX_LIST = 1 << 20          # entries, tensors, RNG states
MAX_DIM = 1 << 32
MAX_NAME = 127

REQUIRED = 1                # section flag bit 0
KNOWN_TAGS = (b"CONF", b"TENS", b"ADAM", b"EMAW", b"RNGS", b"STEP", b"META")

T_INT64, T_FLOAT64, T_STRING, T_F32_ARRAY, T_I64_ARRAY = 1, 2, 3, 4, 5
DTYPE_FLOAT32 = 1
DTYPE_FLOAT16 = 2  # IEEE half; read as the floats it stores (cd_model_save_as)

Tensor = namedtuple("Tensor", "shape data")


class CheckpointError(Exception):
    """A file that is not a valid checkpoint, or a value that cannot be written."""

    def __init__(self, message, kind="format"):
        super().__init__(message)
        self.kind = kind


class Checkpoint:
    """The content of a .cdm file. Insertion order is file order."""

    def __init__(self, conf=None, tensors=None, meta=None, extra=None):
        self.conf = dict(conf or {})
        self.tensors = dict(tensors or {})
        self.meta = dict(meta or {})
        self.extra = list(extra or [])

    def add_tensor(self, name, shape, data):
        """Append a tensor; data is any iterable of floats or an array('f')."""
        data = data if isinstance(data, array.array) and data.typecode == "f" \
            else array.array("f", data)
        shape = tuple(int(d) for d in shape)
        if _product(shape) != len(data):
            raise CheckpointError(f"tensor {name}: {len(data)} values for shape {shape}")
        self.tensors[name] = Tensor(shape, data)


def _product(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def _little_endian(arr):
    """The bytes of an array in little-endian order."""
    if sys.byteorder == "big":
        arr = array.array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def _from_little_endian(typecode, raw):
    arr = array.array(typecode)
    arr.frombytes(raw)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr


# ---------------------------------------------------------------- writing

def _name(name):
    raw = name.encode("utf-8")
    if not 1 <= len(raw) <= MAX_NAME or b"\0" in raw:
        raise CheckpointError(f"bad name {name!r}: 1..{MAX_NAME} bytes without NUL")
    return struct.pack("<I", len(raw)) + raw


def _entry(key, value):
    if isinstance(value, bool):
        raise CheckpointError(f"{key}: booleans have no checkpoint type; use an int")
    if isinstance(value, int):
        typ, raw = T_INT64, struct.pack("<q", value)
    elif isinstance(value, float):
        typ, raw = T_FLOAT64, struct.pack("<d", value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if b"\0" in raw:
            raise CheckpointError(f"{key}: a string value may not contain NUL")
        typ = T_STRING
    elif isinstance(value, array.array) and value.typecode == "f":
        typ, raw = T_F32_ARRAY, _little_endian(value)
    elif isinstance(value, array.array) and value.typecode == "q":
        typ, raw = T_I64_ARRAY, _little_endian(value)
    else:
        raise CheckpointError(f"{key}: unsupported value type {type(value).__name__}")
    return _name(key) + struct.pack("<IQ", typ, len(raw)) + raw


def _entries(entries):
    if len(entries) > MAX_LIST:
        raise CheckpointError(f"more than {MAX_LIST} entries", "unsupported")
    return struct.pack("<I", len(entries)) + b"".join(_entry(k, v) for k, v in entries.items())


def _tensors(tensors):
    if len(tensors) > MAX_LIST:
        raise CheckpointError(f"more than {MAX_LIST} tensors", "unsupported")
    parts = [struct.pack("<I", len(tensors))]
    for name, (shape, data) in tensors.items():
        if not 1 <= len(shape) <= 8 or any(not 1 <= d <= MAX_DIM for d in shape):
            raise CheckpointError(f"tensor {name}: bad shape {shape}")
        if _product(shape) != len(data):
            raise CheckpointError(f"tensor {name}: {len(data)} values for shape {shape}")
        parts.append(_name(name) + struct.pack(f"<II{len(shape)}Q", DTYPE_FLOAT32,
                                                len(shape), *shape))
        parts.append(_little_endian(data))
    return b"".join(parts)


def _section(tag, flags, payload):
    return struct.pack("<4sIQ", tag, flags, len(payload)) + payload


def encode(ckpt, level=1):
    """The bytes of a checkpoint file (CONF, TENS, extra sections, META)."""
    if not ckpt.tensors:
        raise CheckpointError("a checkpoint needs at least one tensor")
    for key, value in ckpt.meta.items():
        if not isinstance(value, str):
            raise CheckpointError(f"META {key}: only strings are allowed")
    body = [_section(b"CONF", REQUIRED, _entries(ckpt.conf)),
            _section(b"TENS", REQUIRED, _tensors(ckpt.tensors))]
    body += [_section(tag, flags, payload) for tag, flags, payload in ckpt.extra]
    if ckpt.meta:
        body.append(_section(b"META", 0, _entries(ckpt.meta)))
    body = b"".join(body)
    if len(body) > MAX_BODY:
        raise CheckpointError("the checkpoint body is above 4 GiB", "unsupported")
    stream = zlib.compress(body, level)
    header = MAGIC + struct.pack("<IIIIQQII", BYTE_ORDER_MARK, FORMAT_VERSION,
                                 COMPRESSION_ZLIB, 0, len(stream), len(body),
                                 binascii.crc32(stream), binascii.crc32(body))
    header += struct.pack("<II", binascii.crc32(header), 0)
    return header + stream


def write(ckpt, path, level=1):
    """Write ckpt to path atomically: a temporary file in the same folder,
    fsync, rename. On failure an existing file at path is unchanged."""
    data = encode(ckpt, level)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cdm-", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())   # as open() would create it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- reading

class _Reader:
    """Bounds-checked little-endian reads within body[start:end]."""

    def __init__(self, body, start, end, what):
        self.body, self.pos, self.end, self.what = body, start, end, what

    def need(self, n):
        if n > self.end - self.pos:
            raise CheckpointError(f"{self.what}: truncated at body offset {self.pos} "
                                  f"(needs {n} more bytes)")

    def unpack(self, fmt):
        size = struct.calcsize(fmt)
        self.need(size)
        values = struct.unpack_from(fmt, self.body, self.pos)
        self.pos += size
        return values

    def raw(self, n):
        self.need(n)
        out = self.body[self.pos:self.pos + n]
        self.pos += n
        return out

    def name(self):
        at = self.pos
        (n,) = self.unpack("<I")
        if not 1 <= n <= MAX_NAME:
            raise CheckpointError(f"{self.what}: bad name length {n} at body offset {at}")
        raw = self.raw(n)
        if b"\0" in raw:
            raise CheckpointError(f"{self.what}: name with NUL at body offset {at}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.what}: name is not UTF-8 at body offset {at}")

    def count(self, min_entry):
        at = self.pos
        (n,) = self.unpack("<I")
        if n > MAX_LIST or n * min_entry > self.end - self.pos:
            raise CheckpointError(f"{self.what}: implausible count {n} at body offset {at}")
        return n


def _read_entries(r, strings_only):
    out = {}
    for _ in range(r.count(17)):
        key = r.name()
        typ, n = r.unpack("<IQ")
        raw = r.raw(n)
        if key in out:
            raise CheckpointError(f"{r.what}: duplicate key {key}")
        value = _decode_value(r.what, key, typ, raw)
        if value is not None and (not strings_only or typ == T_STRING):
            out[key] = value
    return out


def _decode_value(what, key, typ, raw):
    """The Python value of an entry; None for a type this reader skips."""
    fixed = {T_INT64: "<q", T_FLOAT64: "<d"}
    if typ in fixed:
        if len(raw) != 8:
            raise CheckpointError(f"{what}: {key} has {len(raw)} bytes, expected 8")
        return struct.unpack(fixed[typ], raw)[0]
    if typ == T_STRING:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{what}: {key} is not UTF-8")
    arrays = {T_F32_ARRAY: ("f", 4), T_I64_ARRAY: ("q", 8)}
    if typ in arrays:
        code, size = arrays[typ]
        if len(raw) % size:
            raise CheckpointError(f"{what}: {key} has {len(raw)} bytes, not a multiple of {size}")
        return _from_little_endian(code, raw)
    return None


def _read_tensors(r):
    out = {}
    for _ in range(r.count(4 + 1 + 8 + 8 + 4)):
        name = r.name()
        dtype, rank = r.unpack("<II")
        if dtype not in (DTYPE_FLOAT32, DTYPE_FLOAT16):
            raise CheckpointError(f"tensor {name}: dtype {dtype} (only 1, float32, and 2, "
                                  "float16)", "unsupported")
        if not 1 <= rank <= 8:
            raise CheckpointError(f"tensor {name}: rank {rank} outside 1..8")
        dims = r.unpack(f"<{rank}Q")
        n = 1
        for d in dims:
            n *= d
            if not 1 <= d <= MAX_DIM or n > MAX_DIM:
                raise CheckpointError(f"tensor {name}: bad shape {dims}")
        if dtype == DTYPE_FLOAT16:
            raw = r.raw(2 * n)
            data = array.array("f", struct.unpack(f"<{n}e", raw))
        else:
            data = _from_little_endian("f", r.raw(4 * n))
        if name in out:
            raise CheckpointError(f"duplicate tensor {name}")
        out[name] = Tensor(tuple(dims), data)
    return out


def _check_header(raw, size=None):
    """Check the header at the start of raw, for a file of `size` bytes
    (len(raw) when raw is the whole file)."""
    size = len(raw) if size is None else size
    if raw[:len(MAGIC)] != MAGIC:
        raise CheckpointError("not a libcolddiff checkpoint (bad magic)")
    if size < HEADER_SIZE:
        raise CheckpointError(f"truncated header: {size} of {HEADER_SIZE} bytes")
    bom, version = struct.unpack_from("<II", raw, 8)
    if bom == 0x04030201:
        raise CheckpointError("big-endian checkpoint", "unsupported")
    if bom != BYTE_ORDER_MARK:
        raise CheckpointError(f"bad byte-order mark 0x{bom:08x}")
    if version == 0:
        raise CheckpointError("format version 0")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"format version {version} is newer than {FORMAT_VERSION}",
                              "version")
    compression, _, c, u, ccrc, ucrc, hcrc = struct.unpack_from("<IIQQIII", raw, 16)
    if binascii.crc32(raw[:48]) != hcrc:
        raise CheckpointError("header checksum mismatch", "checksum")
    if compression != COMPRESSION_ZLIB:
        raise CheckpointError(f"compression {compression}", "unsupported")
    if c != size - HEADER_SIZE:
        raise CheckpointError(f"the header says {c} compressed bytes, the file has "
                              f"{size - HEADER_SIZE} after offset {HEADER_SIZE}")
    if u > MAX_BODY or u > MAX_RATIO * c + 1024:
        raise CheckpointError(f"implausible body size {u} for {c} compressed bytes")
    return u, ccrc, ucrc


def decode(raw):
    """Parse the bytes of a checkpoint file, checking everything
    docs/checkpoint-format.md lists for a reader (steps 2-14)."""
    u, ccrc, ucrc = _check_header(raw)
    stream = raw[HEADER_SIZE:]
    if binascii.crc32(stream) != ccrc:
        raise CheckpointError("compressed body checksum mismatch", "checksum")
    z = zlib.decompressobj()
    try:
        body = z.decompress(stream, u + 1)
    except zlib.error as e:
        raise CheckpointError(f"the body does not inflate: {e}")
    if len(body) != u or not z.eof or z.unused_data or z.unconsumed_tail:
        raise CheckpointError(f"the body inflates to other than the {u} bytes the header says")
    if binascii.crc32(body) != ucrc:
        raise CheckpointError("body checksum mismatch", "checksum")
    return _parse_body(body)


def _parse_body(body):
    ckpt, seen, pos = Checkpoint(), set(), 0
    while pos < len(body):
        r = _Reader(body, pos, len(body), "section header")
        tag, flags, n = r.unpack("<4sIQ")
        if n > len(body) - r.pos:
            raise CheckpointError(f"section {tag!r} at body offset {pos} overruns the body")
        start, end = r.pos, r.pos + n
        if tag in seen and tag in KNOWN_TAGS:
            raise CheckpointError(f"section {tag.decode('ascii', 'replace')} appears twice")
        seen.add(tag)
        what = tag.decode("ascii", "replace")
        if tag == b"CONF":
            ckpt.conf = _read_entries(_Reader(body, start, end, what), False)
        elif tag == b"TENS":
            ckpt.tensors = _read_tensors(_Reader(body, start, end, what))
        elif tag == b"META":
            ckpt.meta = _read_entries(_Reader(body, start, end, what), True)
        elif tag in KNOWN_TAGS or not flags & REQUIRED:
            ckpt.extra.append((tag, flags, body[start:end]))
        else:
            raise CheckpointError(f"unknown required section {what!r}", "version")
        pos = end
    if b"TENS" not in seen:
        raise CheckpointError("no TENS section")
    _check_block_lengths(ckpt)
    return ckpt


def _check_block_lengths(ckpt):
    """ADAM and EMAW hold one float per tensor element (step 14)."""
    total = sum(len(t.data) for t in ckpt.tensors.values())
    for tag, _, payload in ckpt.extra:
        r = _Reader(payload, 0, len(payload), tag.decode("ascii"))
        if tag == b"ADAM":
            r.unpack("<Q")
            r.raw(12 * r.count(12))
        elif tag != b"EMAW":
            continue
        (n,) = r.unpack("<Q")
        if n != total:
            raise CheckpointError(f"{r.what} holds {n} values for {total} tensor elements")


def read(path):
    """Read and check a checkpoint file (OSError if it cannot be read or is
    not a regular file). The header is checked before the rest is read, so
    a large file that is no checkpoint costs 56 bytes; a FIFO is refused,
    not waited on."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else \
                   "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", path)
        head = f.read(HEADER_SIZE)
        _check_header(head, st.st_size)
        return decode(head + f.read())
