"""JSON that every peer can read: strict parsing, encoding that cannot fail, and the checks a
client's value must pass before it is stored.

Python's `json` accepts `NaN`, `Infinity` and lone UTF-16 surrogates (`"\\ud800"`), none of
which survive the trip to a receiver: NaN is not JSON, and a surrogate cannot be encoded as
UTF-8. Whatever comes in is refused (from clients) or repaired (from upstream) here.
"""

from __future__ import annotations

import json
import math
from typing import Any

REPLACEMENT = "\ufffd"


class UnsafeJson(ValueError):
    """A value that cannot be stored and sent as JSON; the message says where and why."""


def _refuse_constant(name: str) -> Any:
    raise UnsafeJson(f"{name} is not JSON")


# Made once: `json.dumps` and `json.loads` with any option build a new coder at each call,
# which cost more than the encoding of a webhook's body.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(raw: bytes | str) -> Any:
    """Parse JSON, refusing NaN and ±Infinity (which `json` accepts by default).

    Raises ValueError (UnsafeJson included) for anything that is not strict JSON, and
    RecursionError for nesting past the interpreter's limit.
    """
    if isinstance(raw, bytes | bytearray):  # as `json.loads` reads bytes
        raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
    return _DECODER.decode(raw)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Raises UnsafeJson (never a 500 later) for NaN, ±Infinity, lone
    surrogates, or a value that is not JSON at all."""
    try:
        return _ENCODER.encode(value).encode()
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError) as exc:
        raise UnsafeJson(f"not encodable as JSON ({type(exc).__name__})") from None


def check(value: Any, *, max_depth: int, where: str = "body") -> None:
    """Refuse a parsed value that nests deeper than `max_depth` containers, holds text that is
    not valid Unicode (lone surrogates), or a number that is not finite. Iterative: a hostile
    depth costs a loop, not the stack."""
    stack: list[tuple[Any, int, str]] = [(value, 0, where)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise UnsafeJson(f"{path} nests deeper than {max_depth} levels")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str):
                    _check_text(key, f"{path} (a key)")
                stack.append((child, depth + 1, f"{path}.{key}"))
        elif isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, float) and not math.isfinite(item):
            raise UnsafeJson(f"{path} is not a finite number")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise UnsafeJson(f"{path} holds text that is not valid Unicode") from None


def repaired(value: Any, *, max_depth: int, depth: int = 0) -> Any:
    """A copy of a parsed value with lone surrogates replaced by U+FFFD, for text from a peer
    we cannot refuse (the upstream). Raises UnsafeJson for a number that is not finite or
    nesting past `max_depth` (which also bounds the recursion)."""
    if isinstance(value, str):
        return _repair_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise UnsafeJson("not a finite number")
    if isinstance(value, dict | list):
        if depth >= max_depth:
            raise UnsafeJson(f"nests deeper than {max_depth} levels")
        if isinstance(value, list):
            return [repaired(v, max_depth=max_depth, depth=depth + 1) for v in value]
        return {
            _repair_text(k): repaired(v, max_depth=max_depth, depth=depth + 1)
            for k, v in value.items()
        }
    return value


def _repair_text(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        return "".join(REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in text)
    return text
