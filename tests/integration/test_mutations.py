"""Validation under attack: every way we corrupt a product must be reported as an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from padocc_like import api


@pytest.fixture
def validated(tmp_path, archive, write_group):
    """A computed and validated project whose JSON product we then corrupt."""
    archive(n_files=4)
    path = write_group(f"""
group: mut
work_dir: {tmp_path / "work"}
profile: serial
projects:
  - id: p
    sources: {{glob: archive/*.nc}}
""")
    g = api.open_group(path)
    outs = api.run(g, ["init", "scan", "compute", "validate"])
    assert all(o.status == "done" for o in outs), outs
    product = Path(api.status(g)[0]["product"]["path"])
    return g, product


def _mutate(product: Path, fn) -> None:
    doc = json.loads(product.read_text())
    fn(doc["refs"])
    product.write_text(json.dumps(doc))


def _revalidate(g):
    out = api.run(g, ["validate"], force=True)[0]
    rep = api.report(g, "p")
    return out, rep


def _refs(refs, var):
    return sorted(k for k, v in refs.items() if k.startswith(f"{var}/") and isinstance(v, list))


def shift_offset(refs):
    k = _refs(refs, "tas")[5]
    refs[k][1] += 4


def wrong_file(refs):
    keys = _refs(refs, "tas")
    a, b = keys[3], keys[-3]  # same position in another month's file
    refs[a] = list(refs[b])


def swap_chunks(refs):
    keys = _refs(refs, "pr")
    refs[keys[0]], refs[keys[1]] = refs[keys[1]], refs[keys[0]]


def drop_file(refs):
    # remove the last file: its chunks and its steps along time
    last = sorted({v[0] for v in refs.values() if isinstance(v, list)})[-1]
    for k in [k for k, v in refs.items() if isinstance(v, list) and v[0] == last]:
        del refs[k]
    for name in ("time", "time_bnds", "tas", "pr"):
        z = json.loads(refs[f"{name}/.zarray"])
        z["shape"][0] -= 30
        refs[f"{name}/.zarray"] = json.dumps(z)
    zt = json.loads(refs["time/.zarray"])
    zt["chunks"][0] = zt["shape"][0]
    refs["time/.zarray"] = json.dumps(zt)
    import base64

    import numpy as np

    raw = np.frombuffer(base64.b64decode(refs["time/0"][7:]), dtype="<f8")[: zt["shape"][0]]
    refs["time/0"] = "base64:" + base64.b64encode(raw.tobytes()).decode()
    tb = json.loads(refs["time_bnds/.zarray"])
    for k in [k for k in refs if k.startswith("time_bnds/") and not k.split("/")[1].startswith(".")]:
        if int(k.split("/")[1].split(".")[0]) >= tb["shape"][0]:
            del refs[k]


def change_global_attr(refs):
    attrs = json.loads(refs[".zattrs"])
    attrs["title"] = "Something else"
    refs[".zattrs"] = json.dumps(attrs)


def remove_var_attr(refs):
    attrs = json.loads(refs["tas/.zattrs"])
    del attrs["units"]
    refs["tas/.zattrs"] = json.dumps(attrs)


def change_fill_value(refs):
    z = json.loads(refs["pr/.zarray"])
    z["fill_value"] = 0.0
    refs["pr/.zarray"] = json.dumps(z)


def change_dtype(refs):
    z = json.loads(refs["tas/.zarray"])
    z["dtype"] = "<i4"
    refs["tas/.zarray"] = json.dumps(z)


def change_calendar(refs):
    attrs = json.loads(refs["time/.zattrs"])
    attrs["calendar"] = "standard"
    refs["time/.zattrs"] = json.dumps(attrs)


def change_units(refs):
    attrs = json.loads(refs["time/.zattrs"])
    attrs["units"] = "days since 2001-01-01 00:00:00"
    refs["time/.zattrs"] = json.dumps(attrs)


def add_scale_factor(refs):
    attrs = json.loads(refs["tas/.zattrs"])
    attrs["scale_factor"] = 2.0
    refs["tas/.zattrs"] = json.dumps(attrs)


def reorder_time(refs):
    import base64

    import numpy as np

    raw = np.frombuffer(base64.b64decode(refs["time/0"][7:]), dtype="<f8").copy()
    raw[[0, 1]] = raw[[1, 0]]
    refs["time/0"] = "base64:" + base64.b64encode(raw.tobytes()).decode()


MUTATIONS = [
    shift_offset,
    wrong_file,
    swap_chunks,
    drop_file,
    change_global_attr,
    remove_var_attr,
    change_fill_value,
    change_dtype,
    change_calendar,
    change_units,
    add_scale_factor,
    reorder_time,
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda f: f.__name__)
def test_corrupted_product_fails_validation(validated, mutation):
    g, product = validated
    _mutate(product, mutation)
    out, rep = _revalidate(g)
    assert out.status == "failed" and out.error_kind == "validation-failed", out
    assert rep["verdict"] == "fail" and rep["summary"]["error"] >= 1
    row = api.status(g)[0]
    assert row["product"]["status"] == "invalid"
    # an invalid product is never catalogued
    cat = api.run(g, ["catalog"])[0]
    assert cat.status == "failed"


def test_untouched_product_passes(validated):
    g, _ = validated
    out, rep = _revalidate(g)
    assert out.status == "done" and rep["verdict"] == "pass"
