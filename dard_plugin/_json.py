"""The package's one JSON writer: strict JSON (RFC 8259) that every parser reads.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which strict parsers (browsers,
``jq``, Go, Rust's serde) reject. Here a number that is not finite (a value that is missing,
such as an accuracy not measured, or undefined, such as a diverged loss) is written as
``null``, and ``allow_nan=False`` guards the rest: nothing can write ``NaN`` silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def finite_or_null(value: Any) -> Any:
    """``value`` with every float that is not finite (at any depth of dicts, lists and
    tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def dumps_strict(
    payload: Any, *, indent: int | None = 2, default: Callable[[Any], Any] | None = None
) -> str:
    """``payload`` as strict JSON: non-finite floats as ``null`` (see the module)."""
    import json

    return json.dumps(finite_or_null(payload), indent=indent, allow_nan=False, default=default)
