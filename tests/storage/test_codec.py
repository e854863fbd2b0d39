"""Vector codecs bit by bit: round-trip error bounds, and tables written and read with each codec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storage import GradientStore
from storage.codec import CODECS, CodecError, decode, encode

LAYOUT = [("a", 3, 4)]  # dim 12


def awkward_rows() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 12)).astype(np.float32) * rng.lognormal(0, 3, (40, 1)).astype(np.float32)
    x[0] = 0.0  # all zero
    x[1] = 0.0
    x[1, 5] = -3.5  # one value: exactly -127 · s
    x[2] *= 1e30  # float32's top range
    x[3] *= 1e-30  # subnormal-ish scales
    x[4] = np.linspace(-1, 1, 12)  # ties of x / s at .5 steps
    return x


def test_int8_error_at_most_half_a_step_and_decode_is_q_times_s():
    x = awkward_rows()
    q, s = encode(x, "int8")
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (40,)
    assert np.abs(q.astype(np.int32)).max() <= 127 and (q != -128).all()
    peak = np.abs(x).max(1)
    assert np.array_equal(s, (torch.from_numpy(peak) / 127).numpy())
    nonzero = peak > 0
    assert (np.abs(q[nonzero].astype(np.int32)).max(1) == 127).all()  # the peak maps to ±127
    assert (q[~nonzero] == 0).all() and (s[~nonzero] == 0).all()
    dec = decode(torch.from_numpy(q), "int8", torch.from_numpy(s)).numpy()
    assert np.array_equal(dec.view(np.uint32), (q.astype(np.float32) * s[:, None]).view(np.uint32))
    err = np.abs(dec.astype(np.float64) - x.astype(np.float64))
    # half a quantisation step, plus float32 rounding of x/s and of q·s
    bound = s.astype(np.float64)[:, None] * 0.5 * (1 + 1e-6) + np.abs(x) * 2**-23
    assert (err <= bound).all()
    assert dec[1, 5] == -3.5


def test_bfloat16_is_torch_round_to_nearest_even_bits():
    x = awkward_rows()
    bits, scale = encode(x, "bfloat16")
    assert scale is None and bits.dtype == np.uint16
    want = torch.from_numpy(x).to(torch.bfloat16)
    got = decode(torch.from_numpy(bits.view(np.int16)), "bfloat16")
    assert got.dtype == torch.bfloat16 and torch.equal(got.view(torch.int16), want.view(torch.int16))
    rel = (got.double() - torch.from_numpy(x).double()).abs() / torch.from_numpy(x).double().abs().clamp_min(1e-300)
    assert float(rel.max()) <= 2**-8  # 8 significant bits, round to nearest


@pytest.mark.parametrize("dtype", CODECS)
def test_table_round_trip_equals_codec_round_trip(tmp_path, dtype):
    x = awkward_rows()
    if dtype == "float16":
        x = np.clip(x, -6e4, 6e4)
    table = GradientStore(tmp_path / "g").table("c" * 32, f"cfg{dtype}", LAYOUT, dtype)
    ids = [f"e{i}" for i in range(len(x))]
    with table.writer(0, batch_rows=16) as w:
        for s in range(0, len(x), 9):
            w.add(ids[s : s + 9], ids[s : s + 9], ["p"] * len(ids[s : s + 9]), [0] * len(ids[s : s + 9]), x[s : s + 9])
    chunks = list(table.read(chunk_rows=7))
    got_ids = [e for c in chunks for e in c.example_ids]
    got = torch.cat([c.vectors for c in chunks])
    order = [got_ids.index(e) for e in ids]
    values, scale = encode(x, dtype)
    stored = torch.from_numpy(values.view(np.int16) if dtype == "bfloat16" else values)
    want = decode(stored, dtype, None if scale is None else torch.from_numpy(scale))
    assert got.dtype == want.dtype
    assert torch.equal(got[order].view(torch.uint8), want.contiguous().view(torch.uint8))
    assert GradientStore(tmp_path / "g").table("c" * 32, f"cfg{dtype}").dtype == dtype


def test_unknown_codec_is_refused(tmp_path):
    with pytest.raises(CodecError, match="int4"):
        GradientStore(tmp_path / "g").table("c" * 32, "cfg", LAYOUT, "int4")
