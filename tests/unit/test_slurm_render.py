"""The SLURM runner's plain parts: resources, escalation, packing and the rendered script
(hostile strings stay inert: every value that reaches the shell is quoted)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from padocc_like.config.models import SlurmConfig
from padocc_like.runners import slurm
from padocc_like.types import Phase


def render(cfg: SlurmConfig, group_path: Path = Path("/g/group.yaml"), **kw) -> str:
    args = {
        "phase": Phase.SCAN,
        "group_path": group_path,
        "tasks_file": Path("/w/slurm/1/tasks.json"),
        "n_tasks": 3,
        "time_min": 90,
        "memory_mb": 1500,
        "cfg": cfg,
        "log_dir": Path("/w/slurm/1/logs"),
        "job_name": "padocc-g-scan",
        "python": "/venv/bin/python",
        **kw,
    }
    return slurm.render(**args)


def test_the_script_names_everything_configured():
    cfg = SlurmConfig(
        partition="standard",
        account="acct",
        qos="high",
        extra_directives=["--constraint=amd"],
        setup=["module load jaspy"],
        cpus_per_task=2,
    )
    script = render(cfg, dependency="41")
    for line in (
        "#SBATCH --array=0-2",
        "#SBATCH --time=01:30:00",
        "#SBATCH --mem=1500M",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --partition=standard",
        "#SBATCH --account=acct",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=amd",
        "#SBATCH --dependency=aftercorr:41",
        "#SBATCH --kill-on-invalid-dep=yes",
        "module load jaspy",
    ):
        assert line in script.splitlines(), line
    assert script.splitlines()[-1] == (
        "/venv/bin/python -m padocc_like task /g/group.yaml --phase scan "
        '--tasks /w/slurm/1/tasks.json --index "${SLURM_ARRAY_TASK_ID}"'
    )


HOSTILE = st.sampled_from(
    ["$(touch /tmp/pwned)", "`id`", "a b; rm -rf /", "'quoted'", '"dq"', "x\\y", "$HOME", "*", "~root"]
)


@settings(max_examples=25, deadline=None)
@given(word=HOSTILE, suffix=st.text(alphabet="abc $;`'\"", max_size=5))
def test_hostile_values_reach_the_shell_as_plain_words(tmp_path_factory, word, suffix):
    """bash parses the rendered command line back into exactly the words we meant."""
    value = word + suffix
    group_path = Path(f"/g/{value}/group.yaml")
    cfg = SlurmConfig(partition=value)  # (the config strips surrounding whitespace)
    script = render(cfg, group_path=group_path, python="/bin/echo")
    command = script.splitlines()[-1].replace('"${SLURM_ARRAY_TASK_ID}"', "7")
    out = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {command.removeprefix('/bin/echo ')}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == [
        "-m",
        "padocc_like",
        "task",
        str(group_path),
        "--phase",
        "scan",
        "--tasks",
        "/w/slurm/1/tasks.json",
        "--index",
        "7",
    ]
    directive = next(line for line in script.splitlines() if "--partition" in line)
    assert shlex.split(directive.removeprefix("#SBATCH ")) == [f"--partition={cfg.partition}"]


def test_multiline_values_are_refused():
    with pytest.raises(ValidationError, match="one line per item"):
        SlurmConfig(setup=["echo a\nrm -rf /"])
    with pytest.raises(Exception, match="spans lines"):
        render(SlurmConfig(partition="a\nb"))


def test_retries_escalate_within_the_limits():
    cfg = SlurmConfig(max_time_min=100, max_memory_mb=5000, escalation=2.0)
    assert slurm.escalated({"time_min": 30, "memory_mb": 1000, "state": "TIMEOUT"}, cfg) == (60, 1000)
    assert slurm.escalated({"time_min": 60, "memory_mb": 1000, "state": "TIMEOUT"}, cfg) == (100, 1000)
    assert slurm.escalated({"time_min": 30, "memory_mb": 3000, "state": "OUT_OF_MEMORY"}, cfg) == (30, 5000)
    assert slurm.escalated({"time_min": 30, "memory_mb": 1000, "state": "FAILED"}, cfg) == (30, 1000)


@given(n=st.integers(1, 50), per=st.integers(1, 7))
def test_packing_keeps_every_project_once_in_order(n, per):
    ids = [f"p{i}" for i in range(n)]
    tasks = slurm.pack(ids, per)
    assert [p for t in tasks for p in t.projects] == ids
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert all(1 <= len(t.projects) <= per for t in tasks)


def test_resources_come_from_scan_estimates(tmp_path):
    cfg = SlurmConfig(time_min=10, max_time_min=120)
    assert slurm.estimated_resources(tmp_path, Phase.COMPUTE, cfg) == (10, 2000)
    (tmp_path / "scan.json").write_text('{"estimates": {"compute_seconds": 1800}}')
    assert slurm.estimated_resources(tmp_path, Phase.COMPUTE, cfg) == (60, 2000)
    assert slurm.estimated_resources(tmp_path, Phase.SCAN, cfg) == (10, 2000)
    (tmp_path / "scan.json").write_text('{"estimates": {"compute_seconds": 36000}}')
    assert slurm.estimated_resources(tmp_path, Phase.COMPUTE, cfg) == (120, 2000)


def test_scheduler_outputs_parse(monkeypatch):
    outputs = {
        "squeue": "41_0|RUNNING|0:12|None\n41_2|PENDING|0:00|Dependency\n",
        "sacct": "41_0|COMPLETED|0:0|00:00:30\n41_1|TIMEOUT|0:15|00:01:30\n41_2|CANCELLED by 0|0:0|00:00:00\n",
    }
    monkeypatch.setattr(slurm, "_run", lambda cmd, env, what, timeout=60: outputs[cmd[0]])
    assert slurm.queued("41") == {
        0: {"state": "RUNNING", "elapsed": "0:12", "reason": "None"},
        2: {"state": "PENDING", "elapsed": "0:00", "reason": "Dependency"},
    }
    done = slurm.finished("41")
    assert done[1] == {"state": "TIMEOUT", "exit_code": 0, "signal": 15, "elapsed": "00:01:30"}
    assert done[2]["state"] == "CANCELLED"


def test_the_ladder_rounds_up_within_the_limits():
    assert [slurm.rung(v, 30, 200) for v in (1, 30, 31, 60, 61, 150, 200, 500)] == [
        30,
        30,
        60,
        60,
        120,
        200,
        200,
        200,
    ]


def n_rungs(base: int, cap: int) -> int:
    return len({slurm.rung(v, base, cap) for v in range(1, cap + 1)})


@settings(max_examples=200, deadline=None)
@given(
    needs=st.lists(st.tuples(st.integers(1, 300), st.integers(50, 9000)), min_size=1, max_size=40),
    per=st.integers(1, 5),
    split=st.lists(st.integers(0, 4), max_size=40),
)
def test_buckets_hold_every_project_once_with_enough_resources(needs, per, split):
    cfg = SlurmConfig(
        time_min=20, max_time_min=300, memory_mb=1000, max_memory_mb=9000, projects_per_task=per
    )
    ids = [f"p{i}" for i in range(len(needs))]
    wanted = dict(zip(ids, needs, strict=True))
    shards = {pid: n for pid, n in zip(ids, split, strict=False) if n >= 2}
    buckets = slurm.plan(ids, wanted, cfg, shards)
    placed = [(b, t, pid) for b in buckets for t in b.tasks for pid in t.projects]
    assert sorted(pid for _, _, pid in placed) == sorted(ids)  # each project in one task of one bucket
    for bucket, task, pid in placed:
        assert bucket.time_min >= wanted[pid][0] and bucket.memory_mb >= wanted[pid][1]
        assert 1 <= len(task.projects) <= per
        assert bucket.split == (pid in shards)
        assert [(s.shard, s.n_shards) for s in bucket.shards if s.project == pid] == [
            (k, shards.get(pid, 0)) for k in range(shards.get(pid, 0))
        ]
    # task and shard indices count on across buckets: each bucket's arrays are a range of them
    assert [t.index for b in buckets for t in b.tasks] == list(range(sum(len(b.tasks) for b in buckets)))
    assert [s.index for b in buckets for s in b.shards] == list(range(sum(shards.values())))
    assert len(buckets) <= min(len(ids), 2 * n_rungs(20, 300) * n_rungs(1000, 9000))
    assert len({(b.split, b.time_min, b.memory_mb) for b in buckets}) == len(buckets)


def test_uniform_projects_make_one_bucket():
    cfg = SlurmConfig(projects_per_task=2)
    ids = [f"p{i}" for i in range(5)]
    (bucket,) = slurm.plan(ids, dict.fromkeys(ids, (30, 2000)), cfg)
    assert [t.projects for t in bucket.tasks] == [("p0", "p1"), ("p2", "p3"), ("p4",)]
    assert (bucket.time_min, bucket.memory_mb, bucket.shards) == (30, 2000, ())


@given(n_files=st.integers(0, 200), n_shards=st.integers(1, 30))
def test_shards_cover_every_file_once_in_order(n_files, n_shards):
    from padocc_like.stages.scan import shard_slice

    files = list(range(n_files))
    parts = [files[shard_slice(n_files, k, n_shards)] for k in range(n_shards)]
    assert [f for part in parts for f in part] == files
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def slurm_group(write_group, tmp_path, slurm_cfg: str, sizes: dict[str, tuple[int, float]]):
    """A group whose projects look initialised: ``sizes`` project -> (manifest files, estimated
    compute seconds)."""
    import json

    from padocc_like import api

    projects = "\n".join(f"  - {{id: {pid}, sources: {{glob: a/*.nc}}}}" for pid in sizes)
    path = write_group(
        f"group: g\nwork_dir: work\nprofile: {{name: site, slurm: {slurm_cfg}}}\n"
        f"pipeline: kerchunk-no-catalog\nprojects:\n{projects}\n"
    )
    group = api.open_group(path)
    for pid, (n_files, seconds) in sizes.items():
        root = group.work_dir / "projects" / pid
        root.mkdir(parents=True)
        (root / "manifest.json").write_text(
            json.dumps({"files": [{"url": f"/f{i}"} for i in range(n_files)]})
        )
        (root / "scan.json").write_text(json.dumps({"estimates": {"compute_seconds": seconds}}))
    return group


def test_the_dry_run_shows_each_bucket_and_the_shards(write_group, tmp_path):
    from padocc_like import api

    group = slurm_group(
        write_group,
        tmp_path,
        "{time_min: 10, max_time_min: 100, split_files: 100, shard_files: 40}",
        {"small": (3, 1), "small2": (5, 60), "long": (5, 1800), "huge": (101, 1)},
    )
    jobs = api.submit(group, ["scan", "compute", "validate"], dry_run=True)
    table = [(j.bucket, str(j.phase), j.shard, [t.projects for t in j.tasks], j.time_min) for j in jobs]
    assert table == [
        (0, "scan", False, [("small",), ("small2",)], 10),
        (0, "compute", False, [("small",), ("small2",)], 10),
        (0, "validate", False, [("small",), ("small2",)], 10),
        (1, "scan", False, [("long",)], 10),
        (1, "compute", False, [("long",)], 60),
        (1, "validate", False, [("long",)], 60),
        (2, "scan", True, [("huge",), ("huge",), ("huge",)], 10),  # 101 files: 3 shards of <= 40
        (2, "scan", False, [("huge",)], 10),
        (2, "compute", False, [("huge",)], 10),
        (2, "validate", False, [("huge",)], 10),
    ]
    assert not (group.work_dir / "slurm").exists()
    by = {(j.bucket, str(j.phase), j.shard): j for j in jobs}
    assert "#SBATCH --array=0-1" in by[0, "scan", False].script
    assert "#SBATCH --array=2-2" in by[1, "compute", False].script
    assert "#SBATCH --time=01:00:00" in by[1, "compute", False].script
    assert by[1, "compute", False].script_path.name == "compute-b1.sbatch"
    shards = by[2, "scan", True]
    assert "#SBATCH --array=0-2" in shards.script and "--dependency" not in shards.script
    assert shards.script.splitlines()[-1].endswith('--shard --index "${SLURM_ARRAY_TASK_ID}"')
    assert shards.script_path.name == "scan-shards-b2.sbatch"
    scan = by[2, "scan", False].script
    assert "#SBATCH '--dependency=afterany:<job id of the shard array of bucket 2>'" in scan
    assert "#SBATCH --array=3-3" in scan and "--shard" not in scan
    compute = by[2, "compute", False].script
    assert "#SBATCH '--dependency=aftercorr:<job id of the scan array of bucket 2>'" in compute


def test_without_scan_or_a_manifest_nothing_is_split(write_group, tmp_path):
    from padocc_like import api

    group = slurm_group(write_group, tmp_path, "{split_files: 10}", {"huge": (50, 1)})
    assert not any(j.shard for j in api.submit(group, ["compute"], dry_run=True))
    assert any(j.shard for j in api.submit(group, ["scan"], dry_run=True))
    (group.work_dir / "projects" / "huge" / "manifest.json").unlink()
    assert not any(j.shard for j in api.submit(group, ["init", "scan"], dry_run=True))


def test_a_shard_task_fills_the_scan_cache_only(write_group, archive, tmp_path):
    import json

    from padocc_like import api
    from padocc_like.cli import main

    archive("a", n_files=6)
    path = write_group(
        "group: g\nwork_dir: work\nprofile: {name: site, slurm: {split_files: 2}}\n"
        "pipeline: kerchunk-no-catalog\nprojects:\n  - {id: p, sources: {glob: a/*.nc}, concat_dims: [time]}\n"
    )
    group = api.open_group(path)
    assert api.run(group, ["init"])[0].status == "done"
    state = (group.work_dir / "projects" / "p" / "state.json").read_text()
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps({"group": "g", "tasks": [["p"]], "shards": [["p", k, 3] for k in range(3)]}))
    for k in (2, 0):
        argv = ["task", str(path), "--phase", "scan", "--tasks", str(tasks), "--shard", "--index", str(k)]
        assert main(argv) == 0
    cache = group.work_dir / "projects" / "p" / "cache" / "files"
    segments = sorted(cache.glob("scans-*.pkl"))
    assert len(segments) == 2  # named by time, host, process and a random token: never clash
    assert all(re.fullmatch(r"scans-\d{20}-[\w-]+-\d+-[0-9a-f]{8}\.pkl", s.name) for s in segments)
    from padocc_like.stages.files import ScanCache

    assert len(ScanCache(cache).scans) == 4  # shards 0 and 2 of 3: 4 of the 6 files
    assert (group.work_dir / "projects" / "p" / "state.json").read_text() == state  # no state written
    with pytest.raises(Exception, match="no shard 3"):
        slurm.run_shard(group, tasks, 3)
    # a shard that did not run (failed, killed) only leaves its files to the scan task
    assert api.run(group, ["scan"])[0].status == "done"
    assert len(ScanCache(cache).scans) == 6 and len(list(cache.glob("scans-*.pkl"))) == 3
