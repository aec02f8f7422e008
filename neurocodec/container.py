"""The ``.ncx`` container: a self-describing, checksummed file for every codec.

Layout (all integers little-endian; ``uvarint`` is unsigned LEB128), documented in docs/format.md::

    magic          8 bytes   89 4E 43 58 0D 0A 1A 0A   ("\\x89NCX\\r\\n\\x1a\\n")
    format major   u8        readers refuse a major they do not know
    format minor   u8        additions that old readers may ignore
    codec name     u8 length + ASCII
    codec version  uvarint
    header         uvarint length + UTF-8 JSON object
    sections       uvarint count, then per section: u8 name length + ASCII name,
                   uvarint payload length, u32 CRC32 of the payload
    directory CRC  u32 CRC32 of every byte above (magic included)
    payloads       the section payloads, concatenated in directory order

Nothing follows the last payload. Every length is checked against the bytes that remain before
anything is allocated, so a hostile file cannot make the reader allocate more than its own size.
"""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    BadMagicError,
    ChecksumError,
    CorruptStreamError,
    TruncatedStreamError,
    UnsupportedVersionError,
    UsageError,
)

MAGIC = b"\x89NCX\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
_MAX_NAME = 255


@dataclass(frozen=True)
class Container:
    """A parsed (or to-be-written) ``.ncx`` file."""

    codec: str
    codec_version: int
    header: dict[str, Any]
    sections: Mapping[str, bytes] = field(default_factory=dict)
    format_version: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR)

    def section(self, name: str) -> bytes:
        try:
            return self.sections[name]
        except KeyError:
            raise CorruptStreamError(
                f"{self.codec} stream has no '{name}' section (has: {', '.join(self.sections) or 'none'})"
            ) from None

    @property
    def payload_bytes(self) -> dict[str, int]:
        return {name: len(data) for name, data in self.sections.items()}


# ----------------------------------------------------------------------------------------- varints
def write_uvarint(value: int) -> bytes:
    if value < 0:
        raise ValueError("uvarint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Reader:
    """Bounds-checked cursor over bytes: every read names what it was reading when data runs out."""

    def __init__(self, data: bytes, what: str = "stream") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, field_name: str) -> bytes:
        if n < 0 or n > self.remaining:
            raise TruncatedStreamError(
                f"{self.what} truncated: {field_name} needs {n} bytes at offset {self.pos}, "
                f"only {self.remaining} left"
            )
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def u8(self, field_name: str) -> int:
        return self.take(1, field_name)[0]

    def u32(self, field_name: str) -> int:
        return struct.unpack("<I", self.take(4, field_name))[0]

    def uvarint(self, field_name: str, limit: int | None = None) -> int:
        shift = 0
        value = 0
        for _ in range(10):  # 70 bits: far more than any real length
            byte = self.u8(field_name)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if limit is not None and value > limit:
                    raise TruncatedStreamError(
                        f"{self.what} truncated or damaged: {field_name} = {value} exceeds the {limit} bytes that remain"
                    )
                return value
            shift += 7
        raise CorruptStreamError(f"{self.what}: {field_name} is not a valid varint")


# ------------------------------------------------------------------------------------------ writer
def _ascii_name(name: str, what: str) -> bytes:
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise UsageError(f"{what} '{name}' must be ASCII") from None
    if not raw or len(raw) > _MAX_NAME:
        raise UsageError(f"{what} must be 1..{_MAX_NAME} characters")
    return raw


def pack(container: Container) -> bytes:
    """Serialise a container to bytes."""
    head = bytearray(MAGIC)
    head += bytes(container.format_version)
    name = _ascii_name(container.codec, "codec name")
    head += bytes([len(name)]) + name
    head += write_uvarint(int(container.codec_version))
    header = json.dumps(container.header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    head += write_uvarint(len(header)) + header
    head += write_uvarint(len(container.sections))
    for sec_name, payload in container.sections.items():
        raw = _ascii_name(sec_name, "section name")
        head += bytes([len(raw)]) + raw
        head += write_uvarint(len(payload))
        head += struct.pack("<I", zlib.crc32(payload))
    head += struct.pack("<I", zlib.crc32(head))
    return bytes(head) + b"".join(bytes(p) for p in container.sections.values())


# ------------------------------------------------------------------------------------------ reader
def read_preamble(data: bytes) -> tuple[Reader, tuple[int, int]]:
    reader = Reader(data, "ncx file")
    if len(data) < len(MAGIC):
        if MAGIC.startswith(bytes(data)):
            raise TruncatedStreamError(f"ncx file truncated: {len(data)} bytes, shorter than the magic")
        raise BadMagicError("not an .ncx file (wrong magic bytes)")
    if reader.take(len(MAGIC), "magic") != MAGIC:
        raise BadMagicError("not an .ncx file (wrong magic bytes)")
    major = reader.u8("format major version")
    minor = reader.u8("format minor version")
    return reader, (major, minor)


def unpack(data: bytes) -> Container:
    """Parse and verify a container. Raises a :class:`~neurocodec.errors.CorruptStreamError`
    subclass naming the damaged part, or :class:`UnsupportedVersionError`."""
    reader, (major, minor) = read_preamble(data)
    if major != FORMAT_MAJOR:
        # Check the directory CRC first where possible? No: a future major may change the layout.
        raise UnsupportedVersionError(
            f"ncx format version {major}.{minor} is not supported (this neurocodec reads {FORMAT_MAJOR}.x)"
        )
    name_len = reader.u8("codec name length")
    codec_raw = reader.take(name_len, "codec name")
    codec_version = reader.uvarint("codec version")
    header_len = reader.uvarint("header length", limit=reader.remaining)
    header_raw = reader.take(header_len, "header")
    count = reader.uvarint("section count", limit=reader.remaining)
    directory: list[tuple[str, int, int]] = []
    declared_total = 0
    for index in range(count):
        sec_len = reader.u8(f"section {index} name length")
        sec_raw = reader.take(sec_len, f"section {index} name")
        size = reader.uvarint(f"section {index} length", limit=reader.remaining)
        crc = reader.u32(f"section {index} CRC")
        declared_total += size
        directory.append((sec_raw.decode("ascii", "replace"), size, crc))
    dir_end = reader.pos
    stored_crc = reader.u32("directory CRC")
    if zlib.crc32(reader.data[:dir_end]) != stored_crc:
        raise ChecksumError("ncx header checksum mismatch: codec name, JSON header or section table is damaged")
    # From here on the directory is trusted to be what the writer wrote.
    try:
        codec = codec_raw.decode("ascii")
        header = json.loads(header_raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStreamError(f"ncx header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CorruptStreamError("ncx header is not a JSON object")
    if declared_total > reader.remaining:
        raise TruncatedStreamError(
            f"ncx file truncated: sections need {declared_total} bytes, only {reader.remaining} present"
        )
    if declared_total < reader.remaining:
        raise CorruptStreamError(
            f"ncx file has {reader.remaining - declared_total} unexpected trailing bytes"
        )
    sections: dict[str, bytes] = {}
    for sec_name, size, crc in directory:
        payload = reader.take(size, f"section '{sec_name}'")
        if zlib.crc32(payload) != crc:
            raise ChecksumError(f"checksum mismatch in section '{sec_name}' ({size} bytes): data is damaged")
        if sec_name in sections:
            raise CorruptStreamError(f"duplicate section '{sec_name}'")
        sections[sec_name] = payload
    return Container(codec, codec_version, header, sections, (major, minor))
