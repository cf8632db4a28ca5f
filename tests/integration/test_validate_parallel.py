"""Validation's report does not depend on how the work is split.

The same product is validated serially, with a process pool (the pool threshold lowered
so that tiny archives use it), and with variables cut into many slabs: the findings, their
order and the counters must be identical, for a good product and for corrupted ones, in
full and sampled mode, JSON and Parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from padocc_like import api
from padocc_like.runners.pool import LocalEngine
from padocc_like.validation import parallel, values


def _project(tmp_path: Path, write_group, archive, *, pipeline: str = "kerchunk"):
    archive(n_files=5, units_per_file=True)  # time re-encoded across files: decoded times compared
    path = write_group(f"""
group: par
work_dir: {tmp_path / "work"}
pipeline: {pipeline}
profile: serial
projects:
  - id: p
    sources: {{glob: archive/*.nc}}
""")
    g = api.open_group(path)
    outs = api.run(g, ["init", "scan", "compute"])
    assert all(o.status == "done" for o in outs), outs
    return g, Path(api.status(g)[0]["product"]["path"])


def _validate(g, workers: int) -> dict:
    out = api.run(g, ["validate"], force=True, workers=workers)[0]
    rep = api.report(g, "p")
    assert out.status == ("done" if rep["verdict"] == "pass" else "failed"), out
    return {k: rep[k] for k in ("verdict", "summary", "findings", "mode")}


@pytest.fixture
def pooled(monkeypatch):
    """Lower the pool threshold and record whether each validation used a pool."""
    monkeypatch.setattr(LocalEngine, "min_bytes", 0)
    used: list[bool] = []
    init = parallel.Workers.__init__

    def record(self, *a, **kw):
        init(self, *a, **kw)
        used.append(self.pool is not None)

    monkeypatch.setattr(parallel.Workers, "__init__", record)
    return used


def _corrupt(product: Path) -> None:
    doc = json.loads(product.read_text())
    refs = doc["refs"]
    tas = sorted(k for k, v in refs.items() if k.startswith("tas/") and isinstance(v, list))
    pr = sorted(k for k, v in refs.items() if k.startswith("pr/") and isinstance(v, list))
    refs[tas[40]][1] += 4  # a shifted offset: unreadable chunk
    refs[pr[3]], refs[pr[70]] = refs[pr[70]], refs[pr[3]]  # two files' chunks swapped
    attrs = json.loads(refs["tas/.zattrs"])
    attrs["scale_factor"] = 2.0  # decoded values differ
    refs["tas/.zattrs"] = json.dumps(attrs)
    product.write_text(json.dumps(doc))


@pytest.mark.slow
def test_pool_serial_and_slabs_give_the_same_report(tmp_path, write_group, archive, pooled, monkeypatch):
    g, product = _project(tmp_path, write_group, archive)
    serial = _validate(g, workers=1)
    assert serial["verdict"] == "pass" and serial["summary"]["bytes_compared"] > 0
    assert any("re-encoded" in f["message"] for f in serial["findings"])
    assert _validate(g, workers=2) == serial
    assert pooled == [False, True]

    _corrupt(product)
    bad = _validate(g, workers=1)
    assert bad["verdict"] == "fail"
    messages = [f["message"] for f in bad["findings"] if f["severity"] == "error"]
    assert any(m.startswith("cannot read the product's data") for m in messages)
    assert any("raw values differ (first at index" in m for m in messages)
    assert any("scale_factor" in m for m in messages)  # attributes check
    assert _validate(g, workers=2) == bad
    # variables cut into slabs of a few steps: same findings, same first differing index
    monkeypatch.setattr(values, "BLOCK_BYTES", 4 * 18 * 36 * 3)
    assert _validate(g, workers=1) == bad


@pytest.mark.slow
def test_sampled_parquet_pool_matches_serial(tmp_path, write_group, archive, pooled, monkeypatch):
    g, product = _project(tmp_path, write_group, archive, pipeline="kerchunk-sampled")
    assert product.is_dir()  # Parquet references
    serial = _validate(g, workers=1)
    assert serial["mode"] == "sampled" and serial["verdict"] == "pass"
    assert _validate(g, workers=2) == serial
    monkeypatch.setattr(values, "BLOCK_BYTES", 4 * 18 * 36)  # one sampled step per slab
    assert _validate(g, workers=1) == serial
    assert pooled[:2] == [False, True]
