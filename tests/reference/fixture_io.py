"""Write libcolddiff test fixtures (.bin), read by tests/support/fixture.c.

Format, all little-endian:
    magic   b"CDFX"
    uint32  version (1)
    uint32  number of tensors
    per tensor:
        uint32  name length, then the name in UTF-8 (no terminator)
        uint32  rank (0..8; 0 is a scalar holding one value)
        int64   dims[rank]
        float32 data[prod(dims)], row-major
Standard library only, so it can be imported without torch.
"""
import struct

MAGIC = b"CDFX"
VERSION = 1


def write_fixture(path, tensors):
    """tensors: list of (name, shape tuple, flat list of floats)."""
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<II", VERSION, len(tensors)))
        for name, shape, values in tensors:
            raw = name.encode("utf-8")
            n = 1
            for d in shape:
                n *= d
            if len(values) != n:
                raise ValueError(f"{name}: {len(values)} values for shape {shape}")
            f.write(struct.pack("<I", len(raw)) + raw)
            f.write(struct.pack("<I", len(shape)))
            f.write(struct.pack(f"<{len(shape)}q", *shape))
            f.write(struct.pack(f"<{n}f", *values))


def from_torch(name, t):
    """A (name, shape, values) entry from a torch tensor."""
    t = t.detach().contiguous().float().cpu()
    return (name, tuple(t.shape), t.reshape(-1).tolist())
