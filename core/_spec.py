"""Field checks shared by the spec validators; messages name the field and the value."""
from __future__ import annotations

import numpy as np


def int_field(value, field: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (a float like 3.0 is accepted).

    Raises
    ------
    ValueError
        ``{field} must be an integer, got ...`` or ``{field} must be >= {minimum}, got ...``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{field} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{field} must be >= {minimum}, got {value}")
    return int(value)


def choice(value, field: str, table) -> str:
    """``value`` if it is a key of ``table``.

    Raises
    ------
    ValueError
        ``{field} must be one of <keys>, got ...``.
    """
    if value not in table:
        raise ValueError(f"{field} must be one of {', '.join(table)}, got {value!r}")
    return value


def positive_number(value, field: str) -> float:
    """``value`` as a finite float > 0.

    Raises
    ------
    ValueError
        ``{field} must be a number > 0, got ...``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{field} must be a number > 0, got {value!r}")
    return float(value)
