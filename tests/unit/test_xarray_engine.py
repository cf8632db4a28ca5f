"""Products are opened with the xarray backend class, loaded alone: the same backend as
``engine="<name>"``, without importing every installed backend first."""

from __future__ import annotations

import subprocess
import sys

from xarray.backends import BackendEntrypoint

from padocc_like.writers.base import xarray_engine


def test_known_names_give_their_backend_classes():
    from padocc_like.cfa.backend import CFABackendEntrypoint

    for name in ("kerchunk", "zarr", "padocc_cfa", "netcdf4"):
        engine = xarray_engine(name)
        assert isinstance(engine, type) and issubclass(engine, BackendEntrypoint), name
    assert xarray_engine("padocc_cfa") is CFABackendEntrypoint
    assert xarray_engine("no-such-engine") == "no-such-engine"  # xarray reports it


def test_opening_a_product_imports_no_other_backend(tmp_path, archive):
    """xarray's lookup by name would import h5netcdf, cfapyx and xpystac here (scipy comes with dask.array)."""
    from padocc_like import api

    archive(n_files=2)
    group = tmp_path / "g.yaml"
    group.write_text(
        f"group: g\nwork_dir: {tmp_path}/w\nprofile: serial\npipeline: kerchunk-no-catalog\n"
        "projects: [{id: p, sources: {glob: archive/*.nc}}]\n"
    )
    g = api.open_group(group)
    assert all(o.status == "done" for o in api.run(g, ["init", "scan", "compute"]))
    path = api.status(g)[0]["product"]["path"]
    code = (
        "import sys\nimport xarray as xr\nfrom padocc_like.writers.base import xarray_engine\n"
        f"xr.open_dataset({path!r}, engine=xarray_engine('kerchunk'),"
        " storage_options={'remote_protocol': 'file'}).close()\n"
        "print(sorted(m for m in ('h5netcdf', 'cfapyx', 'xpystac', 'pydap') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout
