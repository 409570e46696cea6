"""Memory units, bytes and budget strings.

The papers (TraDy, arXiv 2510.19675; MeDyate, arXiv 2510.20979) count memory
in *units*: one unit is one stored element (a weight being updated or an
activation value kept for the weight derivative), per input sample. Bytes are
units times the bytes per element (4 for float32, the papers' convention:
their "110 kB" budget for MobileNetV2-w0.35 is 27,946 units x 4 B / 1024).

Budget strings use binary prefixes: `"110KB"` is 110 x 1024 bytes.

Example:

>>> from keras_medyate import memory
>>> memory.parse_budget("110KB")
28160
>>> memory.parse_budget(15936)
15936
>>> memory.format_units(15936)
'15,936 units (62.2 KB)'
"""

import re

DEFAULT_BYTES_PER_ELEMENT = 4

_BYTE_MULTIPLIERS = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
}
_UNIT_SUFFIXES = ("", "u", "unit", "units")
_BUDGET_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$")


def units_to_bytes(units, bytes_per_element=DEFAULT_BYTES_PER_ELEMENT):
    """Returns the number of bytes that `units` elements occupy."""
    return units * bytes_per_element


def units_to_kb(units, bytes_per_element=DEFAULT_BYTES_PER_ELEMENT):
    """Returns `units` expressed in KB (1 KB = 1024 bytes)."""
    return units_to_bytes(units, bytes_per_element) / 1024.0


def format_units(units, bytes_per_element=DEFAULT_BYTES_PER_ELEMENT):
    """Formats a unit count for humans, e.g. `'15,936 units (62.2 KB)'`."""
    kb = units_to_kb(units, bytes_per_element)
    if kb >= 1024:
        return f"{int(units):,} units ({kb / 1024:.2f} MB)"
    return f"{int(units):,} units ({kb:.1f} KB)"


def parse_budget(budget, bytes_per_element=DEFAULT_BYTES_PER_ELEMENT):
    """Converts a budget to memory units.

    Args:
        budget: int (units, as in the papers' tables), or a string: a plain
            number or a number with `units` (units), or a number with `B`,
            `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB` (bytes, binary prefixes).
        bytes_per_element: int. Bytes of one stored element. Defaults to 4
            (float32).

    Returns:
        The budget in units (int, rounded down for byte budgets).

    Raises:
        ValueError: the budget is not positive, not a whole number of units,
            or cannot be parsed.

    Example:

    >>> parse_budget("0.5MB")
    131072
    """
    if isinstance(bytes_per_element, bool) or not isinstance(
        bytes_per_element, int
    ) or bytes_per_element <= 0:
        raise ValueError(
            "`bytes_per_element` must be a positive int (4 for float32), "
            f"got {bytes_per_element!r}."
        )
    if isinstance(budget, bool):
        raise ValueError(f"`budget` must be units or a size string, got {budget!r}.")
    if isinstance(budget, (int,)) or (
        hasattr(budget, "dtype") and getattr(budget, "ndim", 1) == 0
    ):
        units = int(budget)
        if units != budget:
            raise ValueError(f"`budget` in units must be a whole number, got {budget!r}.")
        return _positive(units, budget)
    if isinstance(budget, float):
        if not budget.is_integer():
            raise ValueError(
                f"`budget` in units must be a whole number, got {budget!r}. "
                'For a byte size, pass a string such as "110KB".'
            )
        return _positive(int(budget), budget)
    if not isinstance(budget, str):
        raise ValueError(
            "`budget` must be an int number of units or a string such as "
            f'"110KB" or "0.5MB"; got {type(budget).__name__} {budget!r}.'
        )
    match = _BUDGET_PATTERN.match(budget.lower())
    if not match:
        raise ValueError(
            f"Could not parse the budget {budget!r}. Use units (e.g. 15936) or a "
            'size with a binary prefix: "110KB", "0.5MB", "65536B".'
        )
    number, suffix = float(match.group(1)), match.group(2)
    if suffix in _UNIT_SUFFIXES:
        if not number.is_integer():
            raise ValueError(f"A budget in units must be a whole number, got {budget!r}.")
        return _positive(int(number), budget)
    if suffix not in _BYTE_MULTIPLIERS:
        raise ValueError(
            f"Unknown size suffix {match.group(2)!r} in budget {budget!r}. "
            "Accepted: units, B, KB/KiB, MB/MiB, GB/GiB (1 KB = 1024 B)."
        )
    units = int(number * _BYTE_MULTIPLIERS[suffix] // bytes_per_element)
    return _positive(units, budget)


def _positive(units, original):
    if units <= 0:
        raise ValueError(f"The budget must be positive, got {original!r}.")
    return units
