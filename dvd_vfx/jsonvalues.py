"""Plain JSON values from what the engine holds (standard library only: hosts import it too)."""

from __future__ import annotations

import dataclasses
import math
import os
from fractions import Fraction


def jsonable(value, *, finite: bool = False):
    """Plain JSON values for options, results, job events, reports and EXR header attributes:
    dataclasses as dicts, paths and fractions as strings, tuples and numpy arrays as lists,
    numpy scalars as Python numbers.

    finite: NaN and infinities become None (strict JSON, e.g. reports read by other tools).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v, finite=finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, finite=finite) for v in value]
    if isinstance(value, (os.PathLike, Fraction)):
        return str(value) if not isinstance(value, os.PathLike) else os.fspath(value)
    if isinstance(value, float) and finite and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # numpy arrays and scalars (bool_, integer, floating)
        return jsonable(value.tolist(), finite=finite)
    return str(value)
