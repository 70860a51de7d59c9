"""Strings that tenants or the host control, made safe to show: `inert()` for every human output
(tables, stderr lines, log lines) and `put_text()` for every JSON document.

Such strings reach pod-stats as Python `str`: file paths, process names and cgroup names are
decoded from bytes with `surrogateescape`, so a byte that is not UTF-8 is kept as a lone
surrogate (U+DC80–U+DCFF) and the exact bytes are `value.encode("utf-8", "surrogateescape")`.
"""

import base64
import logging
import re
from typing import Any, Optional

__all__ = ["inert", "put_text", "json_escape_controls", "InertFormatter"]


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"  # so that a literal `\x1b` in a name cannot pass for an escape
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # a byte that was not UTF-8: `\x80`…`\xff` mean only this
    if code < 0x80:
        return f"\\x{code:02x}"  # C0 controls, DEL
    if code <= 0xFFFF:
        return f"\\u{code:04x}"  # C1 controls, bidi overrides and isolates, separators, format chars
    return f"\\U{code:08x}"


def inert(value: Optional[str]) -> str:
    """`value` with every character a terminal could act on shown as a visible escape.

    Escaped: what Python does not call printable — control characters (C0, DEL, C1), format
    characters (bidi overrides U+202A–U+202E and isolates U+2066–U+2069, marks, zero-width),
    line and paragraph separators, spaces other than U+0020, unassigned and private-use code
    points, and bytes that were not UTF-8 — plus the backslash itself, so that the escapes are
    unambiguous. None is "". Pass the result to rich as `Text`, never as markup.
    """
    if not value:
        return ""
    if value.isprintable() and "\\" not in value:
        return value
    return "".join(ch if ch.isprintable() and ch != "\\" else _escape(ch) for ch in value)


def is_utf8(value: str) -> bool:
    """Whether the text can be written as UTF-8 (no bytes kept as surrogates, no lone surrogate)."""
    if value.isascii():
        return True
    try:
        value.encode()
        return True
    except UnicodeEncodeError:
        return False


def put_text(document: dict[str, Any], key: str, value: Optional[str]) -> None:
    """`document[key] = value` for a JSON document, lossless and never failing on bytes that
    are not UTF-8: valid text is a JSON string as it is; otherwise the string holds the text
    with U+FFFD for each invalid sequence and `<key>_b64` (only then present) the exact bytes,
    base64 (RFC 4648, padded)."""
    if value is None or is_utf8(value):
        document[key] = value
        return
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that were never bytes (e.g. JSON "\ud800")
        document[key] = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
        return
    document[key] = raw.decode("utf-8", "replace")
    document[f"{key}_b64"] = base64.b64encode(raw).decode("ascii")


# In encoded JSON (valid UTF-8, C0 already escaped): DEL, C1 controls, bidi marks, overrides and
# isolates, line and paragraph separators. UTF-8 is self-synchronizing: these byte sequences are
# those characters wherever they occur.
_JSON_UNSAFE = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def json_escape_controls(encoded: bytes) -> bytes:
    """Encoded JSON with the characters a terminal acts on that JSON encoders leave raw written as
    `\\uXXXX` escapes: the same JSON value, safe when a document is printed to a terminal."""
    if encoded.isascii() and b"\x7f" not in encoded:
        return encoded
    return _JSON_UNSAFE.sub(lambda match: b"\\u%04x" % ord(match.group().decode()), encoded)


class InertFormatter(logging.Formatter):
    """Log lines with tenant or network bytes in them (paths, names, request lines): the message
    is one inert line; a traceback keeps its line breaks, each line inert."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return inert(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return "\n".join(inert(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(inert(line) for line in super().formatStack(stack_info).split("\n"))
