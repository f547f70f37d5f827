#!/usr/bin/env python3
"""Draws the app and tray icons into icons/ with nothing but the standard library.

The design: a rounded violet square holding three stacked server bars, each with a
status light (green, green, amber): a fleet of servers, one of them degraded.
Run it again after changing the drawing; the PNGs are committed.
"""
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "icons")


def png(path, size, pixels):
    raw = b"".join(b"\x00" + bytes(pixels[y * size * 4:(y + 1) * size * 4]) for y in range(size))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    data = b"\x89PNG\r\n\x1a\n"
    data += chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw, 9))
    data += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def rounded_box(x, y, x0, y0, x1, y1, r):
    """Signed coverage (0..1) of a rounded rectangle at pixel centre (x, y)."""
    cx = min(max(x, x0 + r), x1 - r)
    cy = min(max(y, y0 + r), y1 - r)
    d = math.hypot(x - cx, y - cy) - r
    return max(0.0, min(1.0, 0.5 - d))


GREEN, AMBER, RED, GREY = (60, 200, 110), (245, 180, 40), (220, 60, 60), (150, 150, 160)


def draw(size, tray=False, lights=(GREEN, GREEN, AMBER)):
    px = [0] * (size * size * 4)
    s = size / 64.0  # design grid is 64x64
    bars = [(14, 22), (28, 36), (42, 50)]
    for j in range(size):
        for i in range(size):
            x, y = (i + 0.5) / s, (j + 0.5) / s
            a_bg = rounded_box(x, y, 2, 2, 62, 62, 12)
            t = y / 64.0
            bg = (int(88 + 40 * t), int(60 - 20 * t), int(200 - 40 * t))
            col, a = bg, (0.0 if tray else a_bg)
            for k, (y0, y1) in enumerate(bars):
                ab = rounded_box(x, y, 12, y0, 52, y1, 3)
                if ab > 0:
                    bar = (235, 235, 250)
                    col = tuple(int(c0 * (1 - ab) + c1 * ab) for c0, c1 in zip(col, bar))
                    a = max(a, ab)
                al = max(0.0, min(1.0, 0.5 - (math.hypot(x - 45, y - (y0 + y1) / 2) - 2.2) * s / s))
                if al > 0 and ab > 0:
                    col = tuple(int(c0 * (1 - al) + c1 * al) for c0, c1 in zip(col, lights[k]))
            o = (j * size + i) * 4
            px[o:o + 4] = [col[0], col[1], col[2], int(255 * a)]
    return px


os.makedirs(OUT, exist_ok=True)
for name, size in [("32x32.png", 32), ("128x128.png", 128), ("128x128@2x.png", 256), ("icon.png", 512)]:
    png(os.path.join(OUT, name), size, draw(size))
png(os.path.join(OUT, "tray.png"), 64, draw(64, tray=True))
# The tray follows the fleet's worst health: all well, one degraded, one down, nothing running.
png(os.path.join(OUT, "tray-healthy.png"), 64, draw(64, tray=True, lights=(GREEN, GREEN, GREEN)))
png(os.path.join(OUT, "tray-degraded.png"), 64, draw(64, tray=True, lights=(GREEN, GREEN, AMBER)))
png(os.path.join(OUT, "tray-unhealthy.png"), 64, draw(64, tray=True, lights=(GREEN, AMBER, RED)))
png(os.path.join(OUT, "tray-idle.png"), 64, draw(64, tray=True, lights=(GREY, GREY, GREY)))
print("icons written to", os.path.normpath(OUT))
