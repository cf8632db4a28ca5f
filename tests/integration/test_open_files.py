"""No "too many open files": a project of many more files than the descriptor limit runs through.

kerchunk users report failures at 4,096 inputs. Here the limit is lowered to 48 descriptors
in a child process and a 160-file project goes through every phase, with workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from padocc_like.demo import ArchiveSpec, make_archive

N_FILES = 160
FD_LIMIT = 48


def test_many_more_files_than_descriptors(tmp_path):
    make_archive(tmp_path / "archive", ArchiveSpec(n_files=N_FILES, nlat=4, nlon=8, variables=("tas",)))
    (tmp_path / "group.yaml").write_text(
        textwrap.dedent(f"""
        group: g
        work_dir: {tmp_path}/work
        pipeline: kerchunk-no-catalog
        profile: {{name: p, workers: 2}}
        projects:
          - {{id: many, sources: {{glob: archive/*.nc}}, concat_dims: [time]}}
        """)
    )
    code = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT}))
        from padocc_like import api
        if __name__ == "__main__":
            g = api.open_group({str(tmp_path / "group.yaml")!r})
            outs = api.run(g, ["init", "scan", "compute", "validate"])
            print(json.dumps([[o.phase, o.status, o.message] for o in outs]))
            print(json.dumps(api.status(g)[0]))
        """)
    script = tmp_path / "run.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    outcomes, row = (json.loads(line) for line in out.stdout.splitlines()[-2:])
    assert [o[1] for o in outcomes] == ["done"] * 4, outcomes
    assert row["state"] == "done" and row["product"]["status"] == "valid"
    assert "Too many open files" not in out.stderr
