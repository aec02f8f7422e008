from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocodec import container as ncx
from neurocodec.errors import (
    BadMagicError,
    ChecksumError,
    CorruptStreamError,
    NeurocodecError,
    TruncatedStreamError,
    UnsupportedVersionError,
    UsageError,
)


def sample() -> ncx.Container:
    return ncx.Container(
        "demo", 3, {"shape": [2, 3, 4], "dtype": "uint8", "fps": 25.0, "note": "é"},
        {"weights": b"\x00\x01\x02" * 50, "empty": b"", "emb": bytes(range(256))},
    )


def test_round_trip_preserves_everything():
    box = sample()
    back = ncx.unpack(ncx.pack(box))
    assert back.codec == "demo" and back.codec_version == 3
    assert back.header == box.header
    assert dict(back.sections) == dict(box.sections)
    assert list(back.sections) == list(box.sections)  # order kept
    assert back.format_version == (ncx.FORMAT_MAJOR, ncx.FORMAT_MINOR)


def test_layout_starts_with_magic_and_versions():
    blob = ncx.pack(sample())
    assert blob[:8] == b"\x89NCX\r\n\x1a\n"
    assert blob[8] == ncx.FORMAT_MAJOR and blob[9] == ncx.FORMAT_MINOR
    assert blob[10] == 4 and blob[11:15] == b"demo"


def test_large_codec_version_and_many_sections():
    box = ncx.Container("x", 2**40, {}, {f"s{i}": bytes([i % 256]) * i for i in range(300)})
    back = ncx.unpack(ncx.pack(box))
    assert back.codec_version == 2**40 and len(back.sections) == 300


def test_wrong_magic():
    with pytest.raises(BadMagicError, match="not an .ncx"):
        ncx.unpack(b"GIF89a" + bytes(100))


def test_future_format_version_is_refused():
    blob = bytearray(ncx.pack(sample()))
    blob[8] = ncx.FORMAT_MAJOR + 1
    with pytest.raises(UnsupportedVersionError, match="format version 2"):
        ncx.unpack(bytes(blob))


def test_every_truncation_is_reported():
    blob = ncx.pack(sample())
    for n in range(len(blob)):
        with pytest.raises(CorruptStreamError):
            ncx.unpack(blob[:n])
    with pytest.raises(TruncatedStreamError, match="truncated"):
        ncx.unpack(blob[:-1])


def test_every_single_bit_flip_is_detected():
    blob = ncx.pack(sample())
    for i in range(len(blob)):
        for bit in (0, 3, 7):
            damaged = bytearray(blob)
            damaged[i] ^= 1 << bit
            with pytest.raises((CorruptStreamError, UnsupportedVersionError)):
                ncx.unpack(bytes(damaged))


def test_damaged_section_is_named():
    blob = bytearray(ncx.pack(sample()))
    blob[-1] ^= 0xFF  # last byte of the 'emb' section
    with pytest.raises(ChecksumError, match="'emb'"):
        ncx.unpack(bytes(blob))


def test_trailing_bytes_are_reported():
    with pytest.raises(CorruptStreamError, match="trailing"):
        ncx.unpack(ncx.pack(sample()) + b"x")


def test_huge_declared_length_does_not_allocate():
    # A correct directory CRC over a lying length: the length check must fire before any allocation.
    head = bytearray(ncx.MAGIC) + bytes([1, 0, 1]) + b"x" + ncx.write_uvarint(1)
    head += ncx.write_uvarint(2) + b"{}" + ncx.write_uvarint(1) + bytes([1]) + b"s"
    head += ncx.write_uvarint(2**60) + struct.pack("<I", 0)
    head += struct.pack("<I", zlib.crc32(head))
    with pytest.raises(TruncatedStreamError):
        ncx.unpack(bytes(head))


def test_header_must_be_json_object():
    blob = ncx.pack(ncx.Container("x", 1, {"a": 1}, {}))
    # rebuild with a list header and a valid CRC
    head = bytearray(ncx.MAGIC) + bytes([1, 0, 1]) + b"x" + ncx.write_uvarint(1)
    head += ncx.write_uvarint(2) + b"[]" + ncx.write_uvarint(0)
    head += struct.pack("<I", zlib.crc32(head))
    with pytest.raises(CorruptStreamError, match="JSON object"):
        ncx.unpack(bytes(head))
    assert ncx.unpack(blob).header == {"a": 1}


def test_bad_names_are_usage_errors():
    with pytest.raises(UsageError):
        ncx.pack(ncx.Container("", 1, {}, {}))
    with pytest.raises(UsageError):
        ncx.pack(ncx.Container("ok", 1, {}, {"ä": b""}))


def test_missing_section_message():
    box = ncx.unpack(ncx.pack(sample()))
    with pytest.raises(CorruptStreamError, match="no 'nope' section"):
        box.section("nope")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_neurocodec_errors(data):
    with pytest.raises(NeurocodecError):
        ncx.unpack(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=10_000))
def test_random_tails_after_magic_raise_only_neurocodec_errors(tail, cut):
    data = (ncx.MAGIC + bytes([1, 0]) + tail)[: 10 + cut]
    with pytest.raises(NeurocodecError):
        ncx.unpack(data)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
    st.integers(min_value=0, max_value=2**63),
    st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-10**9, 10**9), st.text(max_size=8), st.booleans()), max_size=5),
    st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=6), st.binary(max_size=64), max_size=6),
)
def test_round_trip_property(codec, version, header, sections):
    box = ncx.Container(codec, version, header, sections)
    back = ncx.unpack(ncx.pack(box))
    assert (back.codec, back.codec_version, back.header, dict(back.sections)) == (codec, version, header, sections)
