"""Validation's element comparisons and its decoding of arrays already read.

Validation reads each array once per side and decodes the raw values itself with
xarray's CF decoder; these tests pin that this gives exactly what
``xarray.open_dataset`` gives, variable by variable, on a file with every kind of
decoding (packing, masks, unsigned, time bounds without units, character arrays).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from padocc_like.validation.compare import (
    bitwise_equal,
    count_decoded_unequal,
    decode_array,
    decode_specs,
    time_coder,
)
from padocc_like.validation.parallel import BLOCKS_PER_PROCESS, Workers, blocks_of
from padocc_like.validation.values import read_source


def _nan(payload: int) -> np.float32:
    return np.array([0x7FC00000 | payload], dtype=np.uint32).view(np.float32)[0]


def test_bitwise_equal_sees_nan_payloads_and_signed_zeros():
    a = np.array([1.0, _nan(0), 0.0, 2.0], dtype=np.float32)
    b = np.array([1.0, _nan(1), -0.0, 2.0], dtype=np.float32)
    assert bitwise_equal(a, b).tolist() == [True, False, False, True]
    assert bitwise_equal(a, a.copy()).all()


def test_bitwise_equal_compares_values_across_byte_orders():
    a = np.arange(5, dtype="<f4")
    assert bitwise_equal(a, a.astype(">f4")).all()


def test_count_decoded_unequal_is_nan_aware_with_a_bitwise_fast_path():
    a = np.array([1.0, np.nan, 0.0, 3.0], dtype=np.float32)
    assert count_decoded_unequal(a, a.copy()) == (0, 4)  # identical bits
    b = np.array([1.0, _nan(5), -0.0, 3.0], dtype=np.float32)
    assert count_decoded_unequal(a, b) == (0, 4)  # another NaN, a signed zero: equal values
    c = np.array([1.0, 2.0, 0.0, 4.0], dtype=np.float32)
    assert count_decoded_unequal(a, c) == (2, 4)
    t = np.array(["2000-01-01", "NaT"], dtype="M8[ns]")
    assert count_decoded_unequal(t, t.copy()) == (0, 2)
    assert count_decoded_unequal(np.array(["a", "b"]), np.array(["a", "c"])) == (1, 2)


def _write_everything(path: Path) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("bnds", 2)
        ds.createDimension("x", 4)
        ds.createDimension("strlen", 5)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 2000-01-01", "calendar": "360_day", "bounds": "time_bnds"})
        t[:] = [0.5, 1.5, 2.5]
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))  # no units: inherits time's
        tb[:] = [[0, 1], [1, 2], [2, 3]]
        x = ds.createVariable("x", "f4", ("x",))
        x[:] = [1, 2, 3, 4]
        packed = ds.createVariable("packed", "i2", ("time", "x"), fill_value=np.int16(-999))
        packed.setncatts({"scale_factor": np.float32(0.5), "add_offset": np.float32(10)})
        packed.set_auto_maskandscale(False)
        packed[:] = np.array([[1, 2, -999, 4], [5, -999, 7, 8], [9, 10, 11, -999]], dtype="i2")
        masked = ds.createVariable("masked", "f4", ("time", "x"))
        masked.setncatts({"missing_value": np.float32(1e20)})
        masked.set_auto_maskandscale(False)
        masked[:] = np.array([[1, 1e20, 3, 4], [5, 6, 1e20, 8], [9, 10, 11, 12]], dtype="f4")
        unsigned = ds.createVariable("unsigned", "i1", ("x",))
        unsigned.setncatts({"_Unsigned": "true"})
        unsigned.set_auto_maskandscale(False)
        unsigned[:] = np.array([-1, 0, 1, -128], dtype="i1")
        names = ds.createVariable("names", "S1", ("x", "strlen"))
        names.set_auto_chartostring(False)
        names[:] = np.array([list(w.ljust(5)) for w in ("ab", "cde", "f", "ghijk")], dtype="S1")
        elapsed = ds.createVariable("elapsed", "f8", ("time",))
        elapsed.setncatts({"units": "hours since 2000-01-01 00:00"})
        elapsed[:] = [0, 6, 12]


def test_decoding_raw_arrays_gives_what_open_dataset_gives(tmp_path):
    """Every variable: raw (netCDF4, nothing decoded) + its spec == xarray.open_dataset's values."""
    import netCDF4
    import xarray as xr

    path = tmp_path / "everything.nc"
    _write_everything(path)
    info, specs, meta = read_source(str(path))
    assert specs is not None and specs["time_bnds"].attrs["units"] == "days since 2000-01-01"
    assert specs["names"].stack_char_dim and not specs["x"].stack_char_dim
    with (
        netCDF4.Dataset(path) as nc,
        xr.open_dataset(path, engine="netcdf4", decode_times=time_coder(), decode_timedelta=False) as ds,
    ):
        nc.set_auto_maskandscale(False)
        nc.set_auto_chartostring(False)
        assert set(specs) == set(ds.variables) == set(meta)
        for name in ds.variables:
            raw = np.asarray(nc.variables[name][...])
            got, want = decode_array(name, specs[name], raw), np.asarray(ds[name].values)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert count_decoded_unequal(got, want)[0] == 0, name
            # any block along the first axis decodes to the same block
            if raw.ndim >= 2:
                assert count_decoded_unequal(decode_array(name, specs[name], raw[1:]), want[1:])[0] == 0
    assert info.dims == {"time": 3, "bnds": 2, "x": 4}  # the character dimension is joined
    assert info.var_units["time"] == "days since 2000-01-01"
    assert info.coords["time"][0].strftime().startswith("2000-01-01")


def test_decode_specs_reads_no_data_but_time_samples(tmp_path):
    import xarray as xr

    path = tmp_path / "everything.nc"
    _write_everything(path)
    with xr.open_dataset(path, mask_and_scale=False, decode_times=False, concat_characters=False) as ds:
        specs, decoded = decode_specs(ds.variables, ds.attrs)
        assert "units" not in ds["time_bnds"].attrs  # the dataset's own attributes are untouched
        assert specs["packed"].attrs["scale_factor"] == np.float32(0.5)
        assert decoded["packed"].dtype == np.float32


def test_blocks_are_contiguous_ordered_and_complete():
    items = list(range(23))
    for processes in (1, 2, 3, 10):
        blocks = blocks_of(items, processes)
        assert [i for b in blocks for i in b] == items
        assert all(b for b in blocks) and len(blocks) <= max(1, BLOCKS_PER_PROCESS * processes)
    assert blocks_of([], 2) == []


def _square(offset: int, block: list[int]) -> list[tuple[int, int]]:
    import os
    import time

    time.sleep(0.02)  # long enough for the pool to start and take its share
    return [(offset + i * i, os.getpid()) for i in block]


@pytest.mark.slow
def test_pool_and_this_process_share_blocks_in_order(monkeypatch):
    import os

    monkeypatch.setattr("padocc_like.runners.pool.LocalEngine.min_bytes", 0)
    workers = Workers(2, data_bytes=1, warm=None)
    try:
        assert workers.pool is not None and workers.processes == 2
        items = list(range(300))
        blocks = [[i, i + 1] for i in items[::2]]
        out = workers.map_blocks(_square, 7, blocks)
        assert [v for b in out for v, _ in b] == [7 + i * i for i in items]  # in order, each once
        pids = [pid for b in out for _, pid in b]
        assert pids[0] == os.getpid() and pids[-1] != os.getpid()  # front here, back in the pool
        assert workers.map_blocks(_square, 0, [[1], [2]])[1][0][0] == 4  # the pool is reused
    finally:
        workers.close()
    serial = Workers(1, data_bytes=1, warm=None)  # one worker: this process alone
    assert serial.pool is None and serial.processes == 1
    assert [[v for v, _ in b] for b in serial.map_blocks(_square, 7, [[1, 2], [3]])] == [[8, 11], [16]]


def test_little_data_stays_in_this_process():
    workers = Workers(2, data_bytes=1 << 20, warm=None)
    assert workers.pool is None and workers.processes == 1


def _fail_on_13(offset: int, block: list[int]) -> list[tuple[int, int]]:
    if 13 in block:
        raise ValueError("block with 13")
    return _square(offset, block)


@pytest.mark.slow
def test_an_error_in_any_block_reaches_the_caller(monkeypatch):
    monkeypatch.setattr("padocc_like.runners.pool.LocalEngine.min_bytes", 0)
    workers = Workers(2, data_bytes=1, warm=None)
    try:
        last = [[i] for i in range(20, 120)] + [[13]]  # the pool starts from the back
        for blocks in ([[i] for i in range(60)], [[i] for i in range(13, 0, -1)], last):
            with pytest.raises(ValueError, match="block with 13"):
                workers.map_blocks(_fail_on_13, 0, blocks)
    finally:
        workers.close()


# ---------------------------------------------------------------------------
# masks_alike: when validation may skip decoding bitwise-equal raw values
# ---------------------------------------------------------------------------
def _spec(dims=("t", "x"), **attrs):
    from padocc_like.validation.compare import DecodeSpec

    return DecodeSpec(tuple(dims), dict(attrs), {"dtype": np.dtype("f4")}, False)


def test_masks_alike_across_json_and_numpy_fill_values():
    from padocc_like.validation.compare import masks_alike

    # the product's JSON attribute is a Python float, the source's a float32: both mask 1e20f
    product = _spec(_FillValue=np.float32(1e20), missing_value=1.0000000200408773e20, units="K")
    source = _spec(_FillValue=np.float32(1e20), missing_value=np.float32(1e20), units="K")
    assert masks_alike("tas", product, source, np.dtype("f4"))


@pytest.mark.parametrize(
    "product, source",
    [
        (_spec(_FillValue=np.float32(1e20)), _spec(_FillValue=np.float32(-1e20))),
        (_spec(_FillValue=np.float32(1e20)), _spec()),
        (_spec(missing_value=np.float64(1e20)), _spec(missing_value=np.float32(1e20))),  # 1e20 is no float32
        (_spec(scale_factor=2.0), _spec(scale_factor=2.0)),  # packing: decoded, not skipped
        (_spec(units="days since 2000-01-01"), _spec(units="days since 2000-01-01")),
        (_spec(dims=("t", "x")), _spec(dims=("t", "y"))),
        (_spec(dims=()), _spec(dims=())),
    ],
)
def test_masks_alike_refuses(product, source):
    from padocc_like.validation.compare import masks_alike

    assert not masks_alike("v", product, source, np.dtype("f4"))


_FILLS = st.one_of(
    st.none(),
    st.floats(width=32, allow_nan=True),
    st.floats(allow_nan=False),
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([0.0, -0.0, 1e20, 9.969209968386869e36, -999, 255, -1]),
)


def _typed(value, kind: str):
    if value is None:
        return None
    with np.errstate(all="ignore"):
        return {"py": value, "f4": np.float32(value), "f8": np.float64(value)}[kind]


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from(["f4", "f8", "i2", "i4", "u1"]),
    fills=st.lists(st.tuples(_FILLS, st.sampled_from(["py", "f4", "f8"])), min_size=4, max_size=4),
    data=st.data(),
)
def test_masks_alike_is_sound(dtype, fills, data):
    """Whenever masks_alike says yes, decoding any raw values (fill values included) gives
    the same values under both specs."""
    from padocc_like.validation.compare import DecodeSpec, decode_array, decoded_equal, masks_alike

    dt = np.dtype(dtype)
    typed = []
    for value, kind in fills:
        v = _typed(value, kind)
        if v is not None and dt.kind in "iu" and not (isinstance(value, int) or float(value).is_integer()):
            v = None  # netCDF keeps integer fill values for integer variables
        typed.append(v)
    specs = []
    for fv, mv in (typed[:2], typed[2:]):
        attrs = {k: v for k, v in (("_FillValue", fv), ("missing_value", mv)) if v is not None}
        specs.append(DecodeSpec(("t",), attrs, {"dtype": dt}, False))
    with np.errstate(all="ignore"):
        try:
            alike = masks_alike("v", specs[0], specs[1], dt)
        except (OverflowError, ValueError):
            return
        if not alike:
            return
        if dt.kind == "f":
            info = np.finfo(dt)
            raw = data.draw(
                st.lists(st.floats(width=dt.itemsize * 8, allow_nan=True), min_size=1, max_size=20)
            )
            raw = [*raw, 0.0, -0.0, info.max, np.inf, np.nan]
        else:
            info = np.iinfo(dt)
            raw = data.draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=1, max_size=20))
        extra = []
        for v in typed:
            if v is not None:
                with contextlib.suppress(OverflowError, ValueError):
                    extra.append(np.asarray(v).astype(dt).item())
        arr = np.array([*raw, *extra], dtype=dt)
        a, b = decode_array("v", specs[0], arr), decode_array("v", specs[1], arr)
    assert a.dtype == b.dtype
    assert decoded_equal(a, b).all()


# ---------------------------------------------------------------------------
# same_decoding: identical decoding inputs, whatever the storage and the valid range
# ---------------------------------------------------------------------------
def _spec_enc(encoding, dims=("t",), **attrs):
    from padocc_like.validation.compare import DecodeSpec

    return DecodeSpec(tuple(dims), dict(attrs), dict(encoding), False)


TIME = {"units": "days since 1970-01-01 00:00:00 UTC", "_FillValue": np.float64(-9999.0)}
NC_ENCODING = {"dtype": np.dtype("float64"), "zlib": True, "chunksizes": (1, 360), "source": "/a.nc"}
ZARR_ENCODING = {"dtype": np.dtype("<f8"), "chunks": (1, 360), "filters": (), "shards": None}


def test_same_decoding_ignores_storage_and_valid_ranges():
    from padocc_like.validation.compare import same_decoding

    source = _spec_enc(NC_ENCODING, valid_range=np.array([3238.5, 3239.5]), long_name="t0", **TIME)
    product = _spec_enc(ZARR_ENCODING, valid_range=[3238.5, 10957.5], **TIME)
    assert same_decoding(product, source, np.dtype("f8"))


@pytest.mark.parametrize(
    "change",
    [
        {"units": "hours since 1970-01-01"},
        {"calendar": "noleap"},
        {"_FillValue": np.float64(-999.0)},
        {"_FillValue": np.float32(-9999.0)},  # another type: decoded otherwise
        {"scale_factor": np.float32(2)},
        {"missing_value": np.float64(-9999.0)},
    ],
)
def test_same_decoding_refuses_a_decoding_difference(change):
    from padocc_like.validation.compare import same_decoding

    source = _spec_enc(NC_ENCODING, **TIME)
    assert not same_decoding(_spec_enc(ZARR_ENCODING, **{**TIME, **change}), source, np.dtype("f8"))
    assert not same_decoding(_spec_enc(ZARR_ENCODING, dims=("x",), **TIME), source, np.dtype("f8"))
    assert not same_decoding(source, source, np.dtype("O"))  # strings and enums read the encoding


_ATTR_CHOICES = {
    "units": st.sampled_from([None, "K", "days since 2000-01-01", "hours since 1970-01-01"]),
    "calendar": st.sampled_from([None, "standard", "noleap", "360_day"]),
    "_FillValue": st.sampled_from([None, np.float64(-9999.0), np.float32(-9999.0), np.float64(1e20)]),
    "scale_factor": st.sampled_from([None, np.float32(0.5), np.float64(0.5), 0.5]),
    "add_offset": st.sampled_from([None, np.float64(1.0), 1.0]),
    "valid_range": st.sampled_from([None, [0.0, 1.0], [0.0, 1e9]]),
}


@settings(max_examples=200, deadline=None)
@given(
    first=st.fixed_dictionaries(_ATTR_CHOICES),
    redraw=st.sampled_from([None, *sorted(_ATTR_CHOICES)]),
    data=st.data(),
    raw=st.lists(
        st.one_of(st.floats(allow_infinity=False, min_value=-1e6, max_value=1e6), st.just(float("nan"))),
        min_size=1,
        max_size=12,
    ),
)
def test_same_decoding_is_sound(first, redraw, data, raw):
    """Whenever same_decoding says yes, both specs decode any raw values identically."""
    from padocc_like.validation.compare import decode_array, decoded_equal, same_decoding

    # the second spec: the first with its valid range, and at most one other attribute, drawn again
    second = {**first, "valid_range": data.draw(_ATTR_CHOICES["valid_range"])}
    if redraw is not None:
        second[redraw] = data.draw(_ATTR_CHOICES[redraw])
    specs = [
        _spec_enc(enc, **{k: v for k, v in attrs.items() if v is not None})
        for attrs, enc in zip((first, second), (NC_ENCODING, ZARR_ENCODING), strict=True)
    ]
    if not same_decoding(specs[0], specs[1], np.dtype("f8")):
        return
    arr = np.array([*raw, -9999.0], dtype="f8")
    with np.errstate(all="ignore"):
        try:
            a = decode_array("v", specs[0], arr)
        except Exception as err:  # then the other side must fail alike
            with pytest.raises(type(err)):
                decode_array("v", specs[1], arr)
            return
        b = decode_array("v", specs[1], arr)
    assert a.dtype == b.dtype and decoded_equal(a, b).all()
