"""File kinds by magic bytes: the image formats autobatch knows, what a header says
(``ImageInfo``), and the format a file name's extension promises."""

from __future__ import annotations

import os
from dataclasses import dataclass

# The skip reasons a file's content can earn (the audit adds the file-system ones).
CORRUPT = "corrupt"
UNSUPPORTED = "unsupported_format"
NOT_AN_IMAGE = "not_an_image"
EMPTY = "empty"
UNREADABLE = "unreadable"
DECODABLE_FORMATS = ("jpeg", "png", "gif", "bmp", "webp")

# The head is read in one call; for most training images it is the whole file, which also
# gives the duplicate check a full-content digest for free.
HEAD_BYTES = 64 * 1024

# Where the end-of-file markers are looked for (trailing padding after them is legal).
TAIL_BYTES = 64 * 1024

# Extension -> format it promises; used for the extension-mismatch warning.
EXTENSION_FORMATS = {
    ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".jfif": "jpeg", ".pjpeg": "jpeg",
    ".png": "png", ".apng": "png", ".gif": "gif", ".bmp": "bmp", ".dib": "bmp",
    ".webp": "webp", ".tif": "tiff", ".tiff": "tiff", ".heic": "heif", ".heif": "heif",
    ".avif": "avif", ".jp2": "jpeg2000", ".j2k": "jpeg2000", ".jpf": "jpeg2000",
    ".jpx": "jpeg2000", ".jxl": "jpegxl", ".ico": "ico", ".cur": "ico", ".psd": "psd",
    ".svg": "svg", ".pbm": "pnm", ".pgm": "pnm", ".ppm": "pnm", ".pnm": "pnm", ".pam": "pnm",
    ".exr": "openexr", ".dds": "dds", ".qoi": "qoi", ".hdr": "radiance_hdr", ".dcm": "dicom",
}

# ISO base media file format brands (the 'ftyp' box) that hold still images.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says.

    ``problem`` is None for a file TensorFlow will decode, else a skip reason
    (``corrupt``, ``unsupported_format``, ``not_an_image``, ``empty``, ``unreadable``)
    explained by ``detail``. ``channels`` is what ``decode_image(channels=0)`` returns.
    """

    format: str | None
    problem: str | None = None
    detail: str = ""
    width: int | None = None
    height: int | None = None
    channels: int | None = None
    bit_depth: int | None = None
    notes: tuple[str, ...] = ()
    size_bytes: int = 0
    digest: str | None = None
    """blake2b of the first ``HEAD_BYTES`` (the whole file when it is that small)."""


class Reader:
    """Random access to an open file, served from the head buffer when possible."""

    def __init__(self, fd: int, size: int, head: bytes) -> None:
        self.fd, self.size, self.head = fd, size, head

    def read(self, offset: int, length: int) -> bytes:
        if offset + length <= len(self.head):
            return self.head[offset:offset + length]
        if offset >= self.size:
            return b""
        return os.pread(self.fd, length, offset)

    def tail(self, length: int) -> bytes:
        start = max(0, self.size - length)
        return self.read(start, self.size - start)


def sniff(head: bytes) -> str | None:
    """The format named by a file's first bytes, or None when no image format matches."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == PNG_SIGNATURE:
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return _sniff_unsupported(head)


def _sniff_unsupported(head: bytes) -> str | None:
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[4:8] == b"ftyp":
        brands = {head[i:i + 4] for i in range(8, min(len(head), 64), 4)}
        if brands & _AVIF_BRANDS:
            return "avif"
        if brands & _HEIF_BRANDS:
            return "heif"
        return None  # mp4/mov video and friends are not images
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "jpeg2000"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "jpegxl"
    icon_magic = (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")
    if head[:4] in icon_magic and head[4:6] not in (b"", b"\x00\x00"):  # image count > 0
        return "ico"
    if head[:4] == b"8BPS":
        return "psd"
    if head[:8] == b"\x8aMNG\r\n\x1a\n":
        return "mng"
    if head[:4] == b"v/1\x01":
        return "openexr"
    if head[:4] == b"DDS ":
        return "dds"
    if head[:4] == b"qoif":
        return "qoi"
    if head[:10] == b"#?RADIANCE" or head[:6] == b"#?RGBE":
        return "radiance_hdr"
    if head[:15] == b"FUJIFILMCCD-RAW":
        return "raw"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n":
        return "pnm"
    text = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "svg"
    return None


def expected_format(name: str) -> str | None:
    """The format a file name's extension promises (lower-case match), or None."""
    return EXTENSION_FORMATS.get(os.path.splitext(name)[1].lower())


def corrupt(fmt: str, detail: str, **kw: object) -> ImageInfo:
    return ImageInfo(fmt, CORRUPT, detail, **kw)  # type: ignore[arg-type]
