#!/usr/bin/env python3
"""Generates app/cli/font_fixed.inc: the printable ASCII glyphs of an X11 misc-fixed PCF font.

The PNG plot writer of the command-line tool draws text without Qt or FreeType, so it carries
a small bitmap font compiled in. The misc-fixed fonts are in the public domain ("Public domain
font.  Share and enjoy."), so the generated bitmaps may be committed. CI machines lack the
fonts: re-run this script only to change the font, then commit the regenerated .inc.

usage: scripts/make_font.py [--font /usr/share/fonts/X11/misc/7x13.pcf.gz]
                            [--out app/cli/font_fixed.inc] [--preview]

Python 3 standard library only (gzip, struct).
"""

import argparse
import gzip
import os
import struct
import sys

# Table types of the PCF table of contents.
PCF_PROPERTIES = 1 << 0
PCF_ACCELERATORS = 1 << 1
PCF_METRICS = 1 << 2
PCF_BITMAPS = 1 << 3
PCF_BDF_ENCODINGS = 1 << 5
PCF_BDF_ACCELERATORS = 1 << 8

# Bits of each table's format word.
PCF_GLYPH_PAD_MASK = 3 << 0
PCF_BYTE_MASK = 1 << 2  # set: most significant byte first
PCF_BIT_MASK = 1 << 3  # set: most significant bit is the leftmost pixel
PCF_SCAN_UNIT_MASK = 3 << 4
PCF_FORMAT_MASK = 0xFFFFFF00
PCF_DEFAULT_FORMAT = 0x00000000
PCF_ACCEL_W_INKBOUNDS = 0x00000100
PCF_COMPRESSED_METRICS = 0x00000100

FIRST_CHAR, LAST_CHAR = 32, 126
NO_GLYPH = 0xFFFF


class Reader:
    """Reads integers of one table, in the byte order its format word names."""

    def __init__(self, data, offset, big_endian):
        self.data, self.pos = data, offset
        self.prefix = ">" if big_endian else "<"

    def read(self, code):
        fmt = self.prefix + code
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def read_many(self, code, count):
        fmt = self.prefix + code * count
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return list(values)


def table_of_contents(data):
    if data[:4] != b"\x01fcp":
        sys.exit("not a PCF font (bad magic)")
    (count,) = struct.unpack_from("<i", data, 4)
    tables = {}
    for i in range(count):
        kind, fmt, size, offset = struct.unpack_from("<iiii", data, 8 + 16 * i)
        tables[kind] = (fmt, size, offset)
    return tables


def open_table(data, tables, kind):
    """A Reader positioned after the table's format word (the word itself is always LSB first)."""
    if kind not in tables:
        sys.exit(f"PCF table {kind:#x} missing")
    _, _, offset = tables[kind]
    (fmt,) = struct.unpack_from("<i", data, offset)
    return fmt, Reader(data, offset + 4, bool(fmt & PCF_BYTE_MASK))


def read_properties(data, tables):
    fmt, r = open_table(data, tables, PCF_PROPERTIES)
    count = r.read("i")
    entries = [(r.read("i"), r.read("b"), r.read("i")) for _ in range(count)]
    r.pos += (4 - (count & 3)) & 3  # properties are padded to a 4-byte boundary
    string_size = r.read("i")
    strings = data[r.pos : r.pos + string_size]

    def string_at(offset):
        return strings[offset : strings.index(b"\0", offset)].decode("latin-1")

    return {string_at(name): string_at(value) if is_string else value
            for name, is_string, value in entries}


def read_font_extent(data, tables):
    """The font's ascent and descent: the cell every glyph is placed in."""
    kind = PCF_BDF_ACCELERATORS if PCF_BDF_ACCELERATORS in tables else PCF_ACCELERATORS
    fmt, r = open_table(data, tables, kind)
    r.pos += 8  # seven flag bytes (noOverlap ... drawDirection) and one pad byte
    ascent, descent = r.read("i"), r.read("i")
    return ascent, descent


def read_metrics(data, tables):
    """Per glyph: (left bearing, right bearing, advance width, ascent, descent)."""
    fmt, r = open_table(data, tables, PCF_METRICS)
    if fmt & PCF_FORMAT_MASK == PCF_COMPRESSED_METRICS:
        count = r.read("h")
        return [tuple(r.read("B") - 0x80 for _ in range(5)) for _ in range(count)]
    count = r.read("i")
    metrics = []
    for _ in range(count):
        lsb, rsb, width, ascent, descent = r.read_many("h", 5)
        r.read("H")  # attributes
        metrics.append((lsb, rsb, width, ascent, descent))
    return metrics


def normalise_row(row, fmt):
    """Bytes of one bitmap row in MSB-first byte and bit order, whatever the file used."""
    row = bytearray(row)
    if not fmt & PCF_BIT_MASK:  # least significant bit is leftmost: reverse each byte's bits
        row = bytearray(int(f"{b:08b}"[::-1], 2) for b in row)
    scan_unit = 1 << ((fmt & PCF_SCAN_UNIT_MASK) >> 4)
    msbyte_first, msbit_first = bool(fmt & PCF_BYTE_MASK), bool(fmt & PCF_BIT_MASK)
    if scan_unit > 1 and msbyte_first != msbit_first:  # as libXfont: swap within scan units
        for i in range(0, len(row) - scan_unit + 1, scan_unit):
            row[i : i + scan_unit] = row[i : i + scan_unit][::-1]
    return bytes(row)


def read_bitmaps(data, tables, metrics):
    """Per glyph: a list of rows, each a list of 0/1 pixels (ink box only)."""
    fmt, r = open_table(data, tables, PCF_BITMAPS)
    count = r.read("i")
    offsets = r.read_many("i", count)
    sizes = r.read_many("i", 4)
    base = r.pos
    pad = 1 << (fmt & PCF_GLYPH_PAD_MASK)  # rows are padded to 1, 2, 4 or 8 bytes
    blob = data[base : base + sizes[fmt & PCF_GLYPH_PAD_MASK]]
    glyphs = []
    for offset, (lsb, rsb, _, ascent, descent) in zip(offsets, metrics):
        ink_width, ink_height = rsb - lsb, ascent + descent
        stride = ((ink_width + 7) // 8 + pad - 1) // pad * pad
        rows = []
        for y in range(ink_height):
            row = normalise_row(blob[offset + y * stride : offset + (y + 1) * stride], fmt)
            rows.append([(row[x // 8] >> (7 - x % 8)) & 1 for x in range(ink_width)])
        glyphs.append(rows)
    return glyphs


def read_encoding(data, tables):
    """Maps a character code (single-byte range only) to its glyph index."""
    fmt, r = open_table(data, tables, PCF_BDF_ENCODINGS)
    min2, max2, min1, max1, default_char = r.read_many("h", 5)
    columns = max2 - min2 + 1
    indices = r.read_many("H", columns * (max1 - min1 + 1))
    encoding = {}
    for code in range(FIRST_CHAR, LAST_CHAR + 1):
        byte1, byte2 = code >> 8, code & 0xFF
        if min1 <= byte1 <= max1 and min2 <= byte2 <= max2:
            index = indices[(byte1 - min1) * columns + (byte2 - min2)]
            if index != NO_GLYPH:
                encoding[code] = index
    return encoding


def cell_rows(glyph, metric, cell_width, ascent, descent):
    """The glyph placed in the font's cell, as one int per row (bit cell_width-1 = leftmost)."""
    lsb, _, _, glyph_ascent, _ = metric
    rows = [0] * (ascent + descent)
    for gy, pixels in enumerate(glyph):
        y = ascent - glyph_ascent + gy
        for gx, ink in enumerate(pixels):
            x = lsb + gx
            if ink and 0 <= y < len(rows) and 0 <= x < cell_width:
                rows[y] |= 1 << (cell_width - 1 - x)
    return rows


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", default="/usr/share/fonts/X11/misc/7x13.pcf.gz")
    parser.add_argument("--out", default=os.path.join(here, "..", "app", "cli", "font_fixed.inc"))
    parser.add_argument("--preview", action="store_true", help="print the glyphs as text art")
    args = parser.parse_args()

    opener = gzip.open if args.font.endswith(".gz") else open
    with opener(args.font, "rb") as f:
        data = f.read()
    tables = table_of_contents(data)
    properties = read_properties(data, tables)
    ascent, descent = read_font_extent(data, tables)
    metrics = read_metrics(data, tables)
    glyphs = read_bitmaps(data, tables, metrics)
    encoding = read_encoding(data, tables)

    widths = {metrics[i][2] for i in encoding.values()}
    if len(widths) != 1:
        sys.exit(f"not a fixed-width font: advance widths {sorted(widths)}")
    cell_width = widths.pop()
    if cell_width > 8:
        sys.exit(f"cell width {cell_width} does not fit a byte per row")
    height = ascent + descent
    missing = [c for c in range(FIRST_CHAR, LAST_CHAR + 1) if c not in encoding]
    if missing:
        sys.exit(f"font lacks characters {missing}")

    font_name = os.path.basename(args.font)
    lines = [
        f"// Generated by scripts/make_font.py from {font_name}; do not edit.",
        f"// Regenerate: python3 scripts/make_font.py --font {args.font}",
        f"// Font: {properties.get('FONT', '?')}",
        f"// Copyright property of the font: \"{properties.get('COPYRIGHT', '?')}\"",
        "// (X11 misc-fixed, xorg font-misc-misc: public domain).",
        f"// Glyphs for ASCII {FIRST_CHAR}..{LAST_CHAR}, {height} rows each, one byte per row;",
        f"// bit {cell_width - 1} of a row is the leftmost of {cell_width} pixels.",
        f"constexpr int kFontWidth = {cell_width};",
        f"constexpr int kFontHeight = {height};",
        f"constexpr int kFontAscent = {ascent};",
        f"constexpr int kFontFirstChar = {FIRST_CHAR};",
        f"constexpr int kFontLastChar = {LAST_CHAR};",
        f"constexpr unsigned char kFontGlyphs[{LAST_CHAR - FIRST_CHAR + 1}][{height}] = {{",
    ]
    for code in range(FIRST_CHAR, LAST_CHAR + 1):
        index = encoding[code]
        rows = cell_rows(glyphs[index], metrics[index], cell_width, ascent, descent)
        shown = "space" if code == 32 else ("backslash" if code == 92 else chr(code))
        lines.append("    {" + ", ".join(f"0x{row:02x}" for row in rows) + "},  // " + shown)
        if args.preview:
            print(shown)
            for row in rows:
                print("".join("#" if row >> (cell_width - 1 - x) & 1 else "." for x in range(cell_width)))
    lines.append("};")

    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {os.path.normpath(args.out)}: {cell_width}x{height}, ascent {ascent}", file=sys.stderr)


if __name__ == "__main__":
    main()
