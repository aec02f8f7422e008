"""One exception tree for the whole package.

The CLI maps these to exit codes: :class:`UsageError` -> 2, :class:`InputError` (and so every
corrupt-stream error) -> 3, any other :class:`NeurocodecError` -> 1.
"""
from __future__ import annotations


class NeurocodecError(Exception):
    """Base of every error neurocodec raises on purpose."""


class UsageError(NeurocodecError, ValueError):
    """The caller asked for something that cannot work (unknown parameter, bad option value)."""


class InputError(NeurocodecError, ValueError):
    """The data given to neurocodec is unreadable or of the wrong kind."""


class CorruptStreamError(InputError):
    """An ``.ncx`` stream is damaged: the message says where and how."""


class BadMagicError(CorruptStreamError):
    """The bytes do not start with the ``.ncx`` magic: not a neurocodec file."""


class TruncatedStreamError(CorruptStreamError):
    """The stream ends before a length it declares."""


class ChecksumError(CorruptStreamError):
    """A CRC32 does not match: the named part of the file was altered."""


class UnsupportedVersionError(InputError):
    """The file was written by a newer container or codec version than this one reads."""


class UnknownCodecError(InputError):
    """No codec of that name is registered."""


class ExternalToolError(NeurocodecError):
    """An external program (ffmpeg) refused or failed; the message carries its last line."""


class MissingDependencyError(NeurocodecError, ImportError):
    """An optional package (an extra) is needed for this operation."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        hint = f"pip install 'neurocodec[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"missing optional package '{package}'{what}: {hint}")
        self.package = package
        self.extra = extra
