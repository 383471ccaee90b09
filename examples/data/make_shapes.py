#!/usr/bin/python3
"""Write a folder of coloured shapes as PNG images, for training on RGB data.

    /usr/bin/python3 examples/data/make_shapes.py OUT [--n 500] [--size 32] [--seed 1]

writes OUT/circle/, OUT/square/ and OUT/triangle/, each with --n images of
--size x --size pixels (RGB, 8 bits): one filled shape of a random colour,
size and position on a background of another random colour. The same seed
gives the same files. --sizes W1xH1,W2xH2,... draws each image's size
(width x height) from that list instead and places the shape in the centred
--size x --size square, so that a centre crop to that square (the crop of
cd_dataset_load_folder) recovers it. docs/walkthrough-rgb-folder.md trains
on these images.

Standard library only: write_png() encodes the files with zlib and struct,
and tests/cli/test-cli.sh writes its test images with it too.
"""

import argparse
import os
import random
import struct
import sys
import zlib

CLASSES = ("circle", "square", "triangle")


def write_png(path, width, height, channels, pixels):
    """An 8-bit PNG of `height` rows of `width` pixels: grey for channels 1,
    RGB for 3. pixels holds the rows top to bottom, each pixel's channels
    together (R, G, B), width * height * channels bytes."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    pixels = bytes(pixels)
    stride = width * channels
    if width < 1 or height < 1 or len(pixels) != stride * height:
        raise ValueError(f"{len(pixels)} bytes for {height} rows of {width} x {channels}")

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    # Each row starts with filter type 0 (none).
    rows = b"".join(b"\0" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    colour_type = 0 if channels == 1 else 2
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _inside(shape, cx, cy, r, x, y):
    """Whether point (x, y) lies in the shape of centre (cx, cy) and radius r
    (half the side of the square; the triangle's circumradius)."""
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return abs(dx) <= r and abs(dy) <= r
    # An upright equilateral triangle: apex at (0, -r), base at y = r / 2.
    if dy > r / 2:
        return False
    half = (dy + r) / 3 ** 0.5  # half-width at height dy
    return abs(dx) <= half


def _far_colour(rng, other):
    """A random colour at least 150 away from `other` (Euclidean, 0..255)."""
    while True:
        c = tuple(rng.randrange(256) for _ in range(3))
        if sum((a - b) ** 2 for a, b in zip(c, other)) >= 150 ** 2:
            return c


def draw(rng, shape, size, width=None, height=None):
    """One image as RGB bytes: `shape` in the centred size x size square of
    a width x height canvas (size x size by default), edges anti-aliased
    with 4 x 4 samples a pixel."""
    width, height = width or size, height or size
    bg = tuple(rng.randrange(256) for _ in range(3))
    fg = _far_colour(rng, bg)
    r = rng.uniform(0.2, 0.38) * size
    # The shape's reach left/right, up and down from its centre.
    if shape == "triangle":
        r *= 1.3  # about the area of the others
        across, up, down = r * 3 ** 0.5 / 2, r, r / 2
    else:
        across, up, down = r, r, r
    # The whole shape inside the square, half a pixel from its edges.
    cx = rng.uniform(across + 0.5, size - across - 0.5)
    cy = rng.uniform(up + 0.5, size - down - 0.5)
    ox, oy = (width - size) // 2, (height - size) // 2
    out = bytearray()
    sub = [(i + 0.5) / 4 for i in range(4)]
    for y in range(height):
        for x in range(width):
            px, py = x - ox, y - oy
            if not (-1 <= px <= size and -1 <= py <= size):
                cover = 0.0
            else:
                cover = sum(_inside(shape, cx, cy, r, px + sx, py + sy)
                            for sy in sub for sx in sub) / 16
            out += bytes(round(b + (f - b) * cover) for f, b in zip(fg, bg))
    return bytes(out)


def _sizes(text):
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W1xH1,W2xH2,..., not {text!r}") from None
    if any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected W1xH1,W2xH2,..., not {text!r}")
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to write (class sub-folders are made in it)")
    ap.add_argument("--n", type=int, default=500, help="images per class (500)")
    ap.add_argument("--size", type=int, default=32, help="image side, or the shapes' square with --sizes (32)")
    ap.add_argument("--sizes", type=_sizes, help="W1xH1,W2xH2,...: each image's size, drawn from this list")
    ap.add_argument("--seed", type=int, default=1, help="random seed (1)")
    a = ap.parse_args(argv)
    if a.n < 1 or a.size < 8:
        ap.error("--n must be at least 1 and --size at least 8")
    if a.sizes and any(w < a.size or h < a.size for w, h in a.sizes):
        ap.error(f"every size in --sizes must be at least --size ({a.size}) on each side")
    rng = random.Random(a.seed)
    for shape in CLASSES:
        os.makedirs(os.path.join(a.out, shape), exist_ok=True)
    # Classes interleaved, so that a smaller --n gives a prefix of the same draw order.
    for i in range(a.n):
        for shape in CLASSES:
            w, h = rng.choice(a.sizes) if a.sizes else (a.size, a.size)
            write_png(os.path.join(a.out, shape, f"{i:04d}.png"), w, h, 3,
                      draw(rng, shape, a.size, w, h))
    print(f"wrote {a.n} images in each of {', '.join(CLASSES)} under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
