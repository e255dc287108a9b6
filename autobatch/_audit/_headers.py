"""Identify image files by content (magic bytes) and read their headers, without decoding.

The rules mirror what TensorFlow 2.21's ``tf.io.decode_image`` accepts, measured on this
package's CI machine: JPEG (baseline, progressive, grayscale, CMYK), PNG (any bit depth,
palette, alpha), GIF (first frame), BMP (8/24/32 bit, uncompressed, exact file size) and
static WebP. Formats that are recognised but that TensorFlow cannot decode (TIFF, HEIC,
AVIF, JPEG 2000, ...) are reported as unsupported, and the cheap truncation checks that the
header allows (JPEG end-of-image marker, PNG ``IEND`` chunk, WebP RIFF size, BMP pixel-array
size) report a file as corrupt before training would fail on it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct

from autobatch._audit._kinds import (
    CORRUPT,
    DECODABLE_FORMATS,
    EMPTY,
    HEAD_BYTES,
    NOT_AN_IMAGE,
    TAIL_BYTES,
    UNREADABLE,
    UNSUPPORTED,
    ImageInfo,
    Reader,
    corrupt,
    sniff,
)

# JPEG start-of-frame markers. Lossless and hierarchical ones are beyond TF's 8-bit decoder.
_SOF_SUPPORTED = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive",
                  0xC9: "arithmetic", 0xCA: "progressive arithmetic"}
_SOF_UNSUPPORTED = {0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical progressive",
                    0xC7: "hierarchical lossless", 0xCB: "lossless arithmetic",
                    0xCD: "hierarchical arithmetic", 0xCE: "hierarchical arithmetic",
                    0xCF: "hierarchical lossless arithmetic"}
_PNG_IEND = b"IEND\xaeB`\x82"

# PNG colour type -> channels TF returns for channels=0 (palette with tRNS gives 4).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}


def inspect_file(path: str) -> ImageInfo:
    """Read ``path``'s header (and its tail for truncation checks) and judge it.

    Never raises for a file-system problem: a file that cannot be opened or read, or that
    is not a regular file, comes back with ``problem`` set.
    """
    try:
        # O_NONBLOCK: a FIFO swapped in after the directory scan must not hang the audit.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return ImageInfo(None, UNREADABLE, "the file vanished during the scan")
    except OSError as exc:
        return ImageInfo(None, UNREADABLE, _os_error_text(exc))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return ImageInfo(None, UNREADABLE, "became a folder during the scan")
        if not stat.S_ISREG(st.st_mode):
            return ImageInfo(None, NOT_AN_IMAGE, "not a regular file")
        if st.st_size == 0:
            return ImageInfo(None, EMPTY, "zero bytes", size_bytes=0)
        head = os.pread(fd, HEAD_BYTES, 0)
        if not head:
            return ImageInfo(None, EMPTY, "zero bytes (it shrank during the scan)")
        size = max(st.st_size, len(head))
        reader = Reader(fd, size, head)
        info = _judge(reader)
        digest = hashlib.blake2b(head, digest_size=16).hexdigest()
        return _replace(info, size_bytes=size, digest=digest)
    except OSError as exc:
        return ImageInfo(None, UNREADABLE, _os_error_text(exc))
    finally:
        os.close(fd)


def inspect_bytes(data: bytes) -> ImageInfo:
    """Judge an in-memory file (tests and tools); same rules as ``inspect_file``."""
    if not data:
        return ImageInfo(None, EMPTY, "zero bytes")
    reader = Reader(-1, len(data), data)
    info = _judge(reader)
    return _replace(info, size_bytes=len(data))


def _replace(info: ImageInfo, **changes: object) -> ImageInfo:
    from dataclasses import replace

    return replace(info, **changes)  # type: ignore[arg-type]


def _os_error_text(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _judge(reader: Reader) -> ImageInfo:
    fmt = sniff(reader.head)
    if fmt is None:
        return ImageInfo(None, NOT_AN_IMAGE, "no known image signature")
    if fmt not in DECODABLE_FORMATS:
        return ImageInfo(fmt, UNSUPPORTED, f"{fmt} is not decoded by TensorFlow")
    parser = {"jpeg": _parse_jpeg, "png": _parse_png, "gif": _parse_gif,
              "bmp": _parse_bmp, "webp": _parse_webp}[fmt]
    try:
        return parser(reader)
    except (struct.error, IndexError, ValueError) as exc:
        return ImageInfo(fmt, CORRUPT, f"malformed {fmt} header ({exc})")


def _parse_jpeg(r: Reader) -> ImageInfo:
    pos = 2
    while True:
        marker_head = r.read(pos, 4)
        if len(marker_head) < 2:
            return corrupt("jpeg", "ends before a start-of-frame marker (truncated)")
        if marker_head[0] != 0xFF:
            return corrupt("jpeg", f"expected a marker at byte {pos}")
        marker = marker_head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9 or marker == 0xDA:
            return corrupt("jpeg", "no start-of-frame marker before the image data")
        if 0xD0 <= marker <= 0xD7 or marker in (0x01, 0xD8):
            pos += 2
            continue
        if len(marker_head) < 4:
            return corrupt("jpeg", "truncated inside the header")
        length = struct.unpack(">H", marker_head[2:4])[0]
        if length < 2:
            return corrupt("jpeg", f"bad segment length at byte {pos}")
        if marker in _SOF_SUPPORTED or marker in _SOF_UNSUPPORTED:
            sof = r.read(pos + 4, 6)
            if len(sof) < 6:
                return corrupt("jpeg", "truncated inside the frame header")
            precision, height, width, components = struct.unpack(">BHHB", sof)
            return _finish_jpeg(r, marker, precision, width, height, components, pos + 2 + length)
        pos += 2 + length


def _finish_jpeg(r: Reader, marker: int, precision: int, width: int, height: int,
                 components: int, frame_end: int) -> ImageInfo:
    dims = {"width": width, "height": height, "bit_depth": precision}
    if marker in _SOF_UNSUPPORTED:
        return ImageInfo("jpeg", UNSUPPORTED, f"{_SOF_UNSUPPORTED[marker]} JPEG is not decoded "
                         "by TensorFlow", **dims)  # type: ignore[arg-type]
    if precision != 8:
        return ImageInfo("jpeg", UNSUPPORTED, f"{precision}-bit JPEG; TensorFlow decodes 8-bit "
                         "only", **dims)  # type: ignore[arg-type]
    if components not in (1, 3, 4):
        return corrupt("jpeg", f"{components} colour components", **dims)
    if width == 0 or height == 0:
        return corrupt("jpeg", f"zero image size {width}x{height}", **dims)
    # The end-of-image marker must follow the frame header; FF D9 cannot occur inside
    # entropy-coded data (0xFF is byte-stuffed there). TF refuses a JPEG without it.
    tail_start = max(frame_end, r.size - TAIL_BYTES)
    if r.read(tail_start, r.size - tail_start).rfind(b"\xff\xd9") < 0:
        return corrupt("jpeg", "no end-of-image marker: the file is truncated", **dims)
    notes = [_SOF_SUPPORTED[marker]]
    if components == 4:
        notes.append("cmyk")
    # TF converts CMYK/YCCK to RGB, so a 4-component JPEG decodes to 3 channels.
    channels = 1 if components == 1 else 3
    return ImageInfo("jpeg", None, "", width, height, channels, precision, tuple(notes))


def _parse_png(r: Reader) -> ImageInfo:
    ihdr = r.read(8, 25)
    if len(ihdr) < 25 or ihdr[4:8] != b"IHDR":
        return corrupt("png", "no IHDR chunk after the signature")
    width, height, depth, color_type, _compression, _filter, interlace = struct.unpack(
        ">IIBBBBB", ihdr[8:21])
    dims = {"width": width, "height": height, "bit_depth": depth}
    if color_type not in _PNG_CHANNELS or depth not in _PNG_DEPTHS[color_type]:
        return corrupt("png", f"invalid colour type {color_type} / bit depth {depth}", **dims)
    if width == 0 or height == 0:
        return corrupt("png", f"zero image size {width}x{height}", **dims)
    channels = _PNG_CHANNELS[color_type]
    notes: list[str] = []
    pos = 33
    # Walk the chunks before the first IDAT: a palette image with tRNS decodes to RGBA,
    # acTL marks an APNG (TF decodes its default image).
    while pos + 8 <= len(r.head):
        length, kind = struct.unpack(">I4s", r.head[pos:pos + 8])
        if kind == b"IDAT":
            break
        if kind == b"tRNS" and color_type == 3:
            channels = 4
        if kind == b"acTL":
            notes.append("animated")
        pos += 12 + length
    if interlace:
        notes.append("interlaced")
    if _PNG_IEND not in r.tail(TAIL_BYTES):
        return corrupt("png", "no IEND chunk: the file is truncated", **dims)
    return ImageInfo("png", None, "", width, height, channels, depth, tuple(notes))


def _parse_gif(r: Reader) -> ImageInfo:
    if len(r.head) < 13:
        return corrupt("gif", "truncated inside the header")
    width, height, flags = struct.unpack_from("<HHB", r.head, 6)
    dims = {"width": width, "height": height, "bit_depth": 8}
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    # TF (expand_animations=False) needs the first frame whole; what follows it may be cut
    # (measured: a GIF without its trailer, or with a later frame cut, still decodes).
    # So walk the blocks up to the end of the first image's data.
    while True:
        introducer = r.read(pos, 1)
        if introducer == b"\x21":  # extension: label, then data sub-blocks
            pos = _skip_gif_sub_blocks(r, pos + 2)
        elif introducer == b"\x2c":  # image descriptor
            descriptor = r.read(pos, 10)
            if len(descriptor) < 10:
                break
            local = descriptor[9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            pos = _skip_gif_sub_blocks(r, pos + 1)  # +1: LZW minimum code size
            if pos < 0:
                break
            return ImageInfo("gif", None, "", width, height, 3, 8,
                             ("animated",) if r.read(pos, 1) not in (b";", b"") else ())
        else:
            return corrupt("gif", f"unexpected block 0x{introducer.hex() or 'EOF'} before "
                            "the first frame", **dims)
        if pos < 0:
            break
    return corrupt("gif", "ends inside the first frame: the file is truncated", **dims)


def _skip_gif_sub_blocks(r: Reader, pos: int) -> int:
    """Position after the block terminator, or -1 when the file ends first."""
    while True:
        length = r.read(pos, 1)
        if not length:
            return -1
        pos += 1 + length[0]
        if length[0] == 0:
            return pos


def _parse_bmp(r: Reader) -> ImageInfo:
    # Mirrors TF's DecodeBmpV2: it reads width/height/bpp at fixed offsets, ignores the
    # compression field, treats 8-bit as grayscale (the palette is ignored), and demands
    # that the file size be exactly header + padded rows.
    h = r.read(0, 54)
    if len(h) < 32:
        return corrupt("bmp", "truncated inside the header")
    offset, dib_size = struct.unpack_from("<II", h, 10)
    if dib_size == 12:
        return ImageInfo("bmp", UNSUPPORTED, "OS/2 BMP header is not decoded by TensorFlow")
    width, height, _planes, bpp = struct.unpack_from("<iiHH", h, 18)
    compression = struct.unpack_from("<I", h, 30)[0] if len(h) >= 34 and dib_size >= 40 else 0
    dims = {"width": width, "height": abs(height), "bit_depth": 8}
    if bpp not in (8, 24, 32):
        return ImageInfo("bmp", UNSUPPORTED, f"{bpp}-bit BMP; TensorFlow decodes 8, 24 and "
                         "32-bit only", **dims)
    if compression not in (0, 3, 6):
        return ImageInfo("bmp", UNSUPPORTED, f"compressed BMP (method {compression}) is not "
                         "decoded by TensorFlow", **dims)
    if width <= 0 or height == 0:
        return corrupt("bmp", f"bad image size {width}x{height}", **dims)
    channels = bpp // 8
    if width * abs(height) >= (2**31 - 1) // 8:
        return ImageInfo("bmp", UNSUPPORTED, "too many pixels for TensorFlow's BMP decoder",
                         **dims)
    row_bytes = (channels * width + 3) // 4 * 4
    size_diff = r.size - offset - row_bytes * abs(height)
    if size_diff < 0:
        return corrupt("bmp", f"{-size_diff} bytes short of the pixel data: truncated", **dims)
    if size_diff > 0:
        return corrupt("bmp", f"{size_diff} bytes beyond the pixel data; TensorFlow's BMP "
                        "decoder demands an exact size", **dims)
    notes: tuple[str, ...] = ()
    if channels == 1 and not _bmp_palette_is_gray(r, 14 + dib_size, offset):
        notes = ("palette",)
    return ImageInfo("bmp", None, "", width, abs(height), channels, 8, notes)


def _bmp_palette_is_gray(r: Reader, start: int, end: int) -> bool:
    palette = r.read(start, max(0, min(end - start, 1024)))
    for i in range(0, len(palette) - 3, 4):
        b, g, red = palette[i], palette[i + 1], palette[i + 2]
        if not (b == g == red == i // 4):
            return False
    return True


def _parse_webp(r: Reader) -> ImageInfo:
    riff_size = struct.unpack_from("<I", r.head, 4)[0]
    chunk = r.read(12, 30)
    if len(chunk) < 18:
        return corrupt("webp", "truncated inside the header")
    kind = chunk[:4]
    data = chunk[8:]
    alpha = False
    notes: list[str] = []
    if kind == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            return corrupt("webp", "bad VP8 frame start code")
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", data, 6))
        notes.append("lossy")
    elif kind == b"VP8L":
        if data[0] != 0x2F:
            return corrupt("webp", "bad VP8L signature")
        bits = struct.unpack_from("<I", data, 1)[0]
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        alpha = bool((bits >> 28) & 1)
        notes.append("lossless")
    elif kind == b"VP8X":
        flags = data[0]
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        alpha = bool(flags & 0x10)
        if flags & 0x02:
            # Measured: TF 2.21 decodes an animated WebP once and corrupts the heap; the
            # process aborts on a later decode. Training must never see one.
            return ImageInfo("webp", UNSUPPORTED, "animated WebP crashes TensorFlow's decoder",
                             width=width, height=height, bit_depth=8, notes=("animated",))
        notes.append("extended")
    else:
        return corrupt("webp", f"unknown WebP chunk {kind!r}")
    dims = {"width": width, "height": height, "bit_depth": 8}
    if r.size < 8 + riff_size:
        return corrupt("webp", f"{8 + riff_size - r.size} bytes short of the RIFF size: "
                        "truncated", **dims)
    return ImageInfo("webp", None, "", width, height, 4 if alpha else 3, 8, tuple(notes))
