"""The CLI: a thin, fast layer; exit codes; status and report output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from padocc_like.cli import main

HEAVY = ("xarray", "h5py", "netCDF4", "numpy", "pystac", "zarr", "kerchunk", "pandas")
CONFIG = ("pydantic", "yaml")


def _loaded_modules(*args: str) -> set[str]:
    code = (
        "import sys\nfrom padocc_like.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('MODULES', ' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("MODULES"))
    return set(line.split()[1:])


def test_help_imports_no_heavy_library():
    assert not _loaded_modules("--help") & set(HEAVY)


def test_status_imports_no_heavy_library(tmp_path, archive, write_group):
    archive(n_files=1)
    path = write_group(
        f"group: g\nwork_dir: {tmp_path}/w\nprojects: [{{id: p, sources: {{glob: archive/*.nc}}}}]\n"
    )
    assert main(["init", str(path), "-q"]) == 0
    first = _loaded_modules("status", str(path))
    assert not first & set(HEAVY)
    assert set(CONFIG) <= first  # the first status loads the group, and saves its index
    # an unchanged group answers from the index: no YAML parsing, no config models
    assert not _loaded_modules("status", str(path)) & set(HEAVY + CONFIG)


def _status_json(path, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "padocc_like", "status", str(path), "--json", *args],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_status_from_the_index_equals_status_from_the_group(tmp_path, archive, write_group, monkeypatch):
    from padocc_like import api
    from padocc_like.group_index import index_path

    archive(n_files=2)
    path = write_group(f"""
group: g
work_dir: {tmp_path}/w
profile: serial
pipeline: kerchunk-no-catalog
projects:
  - {{id: good, sources: {{glob: archive/*.nc}}}}
  - {{id: bad, sources: {{glob: missing/*.nc}}}}
  - {{id: later, sources: {{glob: archive/*.nc}}}}
""")
    g = api.open_group(path)
    api.run(g, ["init", "scan", "compute", "validate"], projects=api.select(g, ["good", "bad"]))
    api.save_subset(g, "two", api.select(g, ["good", "later"]))
    expected = {"group": "g", "work_dir": str(g.work_dir), "projects": api.status(g)}
    cache = index_path(Path(os.environ["PADOCC_LIKE_CACHE_DIR"]), path)
    assert not cache.exists()
    assert _status_json(path) == expected  # loads the group, writes the index
    assert cache.exists()
    assert _status_json(path) == expected  # from the index
    assert expected["projects"][0]["state"] == "done"  # the no-catalog pipeline ends at validate
    selections = (
        (["-s", "failed"], {"states": ["failed"]}),
        (["-p", "later", "-p", "good"], {"projects": ["later", "good"]}),
        (["--subset", "two"], {"subset": "two"}),
        (["-s", "done", "-s", "pending"], {"states": ["done", "pending"]}),
    )
    for args, selection in selections:
        rows = api.status(g, api.select(g, **selection))
        assert rows and _status_json(path, *args)["projects"] == rows, args
    # one project: in detail, its row's fields included
    (row,) = api.status(g, api.select(g, ["later"]))
    detail = _status_json(path, "-p", "later")["project"]
    assert {k: detail[k] for k in row} == row


def test_group_index_is_refused_when_any_input_changes(tmp_path, write_group):
    from padocc_like import api
    from padocc_like.group_index import build_index, load_index, save_index

    cache = tmp_path / "cache"
    path = write_group(
        f"group: g\nwork_dir: {tmp_path}/w\npipeline: kerchunk\nprojects: [{{id: p, sources: {{glob: x}}}}]\n"
    )
    save_index(cache, build_index(api.open_group(path)))
    assert load_index(cache, path).projects == {"p": "catalog"}
    # a pipeline of the same name next to the group would now win: the index must not be used
    (tmp_path / "pipelines").mkdir()
    shadow = tmp_path / "pipelines" / "kerchunk.yaml"
    shadow.write_text("name: shadow\nphases: [init, scan]\n")
    assert load_index(cache, path) is None
    save_index(cache, build_index(api.open_group(path)))
    assert load_index(cache, path).projects == {"p": "scan"}
    shadow.write_text("name: shadow\nphases: [init, scan, compute]\n")
    assert load_index(cache, path) is None
    save_index(cache, build_index(api.open_group(path)))
    path.write_text(path.read_text().replace("id: p", "id: q"))
    assert load_index(cache, path) is None
    # damaged index: ignored
    (next((cache / "groups").glob("*.json"))).write_text("{")
    assert load_index(cache, Path(path)) is None


def test_groups_with_discover_are_never_indexed(tmp_path, write_group):
    from padocc_like import api
    from padocc_like.group_index import build_index

    (tmp_path / "data" / "a").mkdir(parents=True)
    path = write_group(f"group: g\nwork_dir: {tmp_path}/w\ndiscover: [{{root: data, pattern: '*'}}]\n")
    assert build_index(api.open_group(path)) is None


def test_run_status_report_and_exit_codes(tmp_path, archive, write_group, capsys):
    archive(n_files=2)
    path = write_group(f"""
group: g
work_dir: {tmp_path}/w
profile: serial
projects:
  - {{id: good, sources: {{glob: archive/*.nc}}}}
  - {{id: bad, sources: {{glob: missing/*.nc}}}}
""")
    assert main(["run", str(path)]) == 1  # one project failed
    out = capsys.readouterr().out
    assert "FAIL init     bad" in out and "ok   catalog  good" in out and "1 project(s) ok, 1 failed" in out
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "needing attention, by phase and reason:" in out and "init/no-sources: 1 (bad)" in out
    assert main(["status", str(path), "--json", "-s", "failed"]) == 0
    rows = json.loads(capsys.readouterr().out)["projects"]
    assert [r["project"] for r in rows] == ["bad"] and rows[0]["error_kind"] == "no-sources"
    assert main(["report", str(path), "-p", "good"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["run", str(path), "-p", "good", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert all(x["skipped"] for x in lines)


def test_bad_config_exits_2(tmp_path, write_group, capsys):
    path = write_group("group: g\nwork_dir: w\nprojects: [{id: p, sources: {glob: x}, colour: red}]\n")
    assert main(["status", str(path)]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: padocc-like" in capsys.readouterr().out


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "padocc_like", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("padocc-like ")
