"""The CLI: a thin, fast layer; exit codes; status and report output."""

from __future__ import annotations

import json
import subprocess
import sys

from padocc_like.cli import main

HEAVY = ("xarray", "h5py", "netCDF4", "numpy", "pystac", "zarr", "kerchunk", "pandas")


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
    assert not _loaded_modules("status", str(path)) & set(HEAVY)


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
    assert "failures by kind:" in out and "init/no-sources: 1 (bad)" in out
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
