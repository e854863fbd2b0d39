"""How a gradient table stores its vectors: the table's ``dtype`` names one codec.

- ``float32``: exact.
- ``float16``: round to nearest; refuses |x| > 65504 (a table of such values must be float32).
- ``bfloat16``: round to nearest even, float32's range; stored as the 16 raw bits (Arrow has no
  bfloat16), read back as a zero-copy ``torch.bfloat16`` view.
- ``int8``: per-row symmetric quantisation, ``x ≈ q · s`` with ``s = max|x| / 127`` (float32) and
  ``q = round(x / s)`` in [-127, 127]: |error| ≤ s/2 per value, 1 byte per value + 4 per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from valuation.errors import DataworthError

CODECS: tuple[str, ...] = ("float32", "float16", "bfloat16", "int8")
FLOAT16_MAX = 65504.0
INT8_LEVELS = 127


class CodecError(DataworthError, ValueError):
    """An unknown codec, or rows it cannot decode."""


class CodecOverflowError(DataworthError, OverflowError):
    """A value beyond the codec's range (float16)."""


def check_codec(dtype: str) -> None:
    if dtype not in CODECS:
        raise CodecError(f"unknown gradient dtype {dtype!r}; expected one of {CODECS}")


def value_type(dtype: str) -> pa.DataType:
    """Arrow type of one stored value."""
    check_codec(dtype)
    return {"float32": pa.float32(), "float16": pa.float16(), "bfloat16": pa.uint16(), "int8": pa.int8()}[dtype]


def has_scale(dtype: str) -> bool:
    """Whether rows carry a float32 ``scale`` column."""
    return dtype == "int8"


def bytes_per_value(dtype: str) -> int:
    return {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}[dtype]


def encode(arr: np.ndarray, dtype: str, where: str = "vectors") -> tuple[np.ndarray, np.ndarray | None]:
    """``(n, dim)`` float values → (stored values ``(n, dim)`` of the codec's numpy type, per-row
    float32 scales or ``None``). ``where`` names the rows in errors."""
    check_codec(dtype)
    if dtype == "float32":
        return arr.astype(np.float32, copy=False), None
    if dtype == "float16":
        peak = float(np.abs(arr).max()) if arr.size else 0.0
        if peak > FLOAT16_MAX:
            raise CodecOverflowError(
                f"{where}: |value| {peak:.3g} exceeds float16's {FLOAT16_MAX}; store this configuration as float32"
            )
        return arr.astype(np.float16), None
    wide = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if dtype == "bfloat16":
        return wide.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16), None
    peak = wide.abs().amax(1) if wide.shape[0] else wide.new_zeros(0)
    scale = (peak / INT8_LEVELS).to(torch.float32)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    # round-half-even of x/s; |x/s| ≤ 127 up to float32 rounding, hence the clamp.
    q = torch.round(wide / safe[:, None]).clamp_(-INT8_LEVELS, INT8_LEVELS).to(torch.int8)
    return q.numpy(), scale.numpy()


def decode(values: torch.Tensor, dtype: str, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Stored ``(n, dim)`` values → vectors: float16/float32 unchanged (zero-copy), bfloat16 as a
    view, int8 as float32 ``q · s``."""
    if dtype in ("float32", "float16"):
        return values
    if dtype == "bfloat16":
        return values.view(torch.bfloat16)
    if dtype == "int8":
        if scale is None:
            raise CodecError("int8 rows need their scale")
        return values.to(torch.float32) * scale.to(torch.float32)[:, None]
    raise CodecError(f"unknown gradient dtype {dtype!r}; expected one of {CODECS}")


def numpy_view(flat: np.ndarray, dtype: str) -> torch.Tensor:
    """Arrow's value buffer as a torch tensor of the stored type (bfloat16 bits stay int16)."""
    if dtype == "bfloat16":
        return torch.from_numpy(flat.view(np.int16))
    return torch.from_numpy(flat)
