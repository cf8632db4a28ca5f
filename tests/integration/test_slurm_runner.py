"""Phases as SLURM array jobs on a real single-node cluster (``tests/slurmcluster.py``): a group
runs end to end as chained arrays with a failing project; a task that times out fails its
phase with that reason and an escalated retry succeeds; a submission error is an error."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from padocc_like import api
from padocc_like.cli import main
from padocc_like.errors import JobSubmissionError

pytestmark = pytest.mark.slurm

PHASES = ["init", "scan", "compute", "validate"]


def group_file(write_group, slurm: str, projects: str) -> str:
    return write_group(
        f"""
        group: g
        work_dir: work
        profile:
          name: site
          slurm: {slurm}
        pipeline: kerchunk-no-catalog
        projects:
        {projects}
        """
    )


def wait_for_jobs(group, env, timeout: float) -> dict:
    from padocc_like.runners.slurm import TERMINAL

    deadline = time.monotonic() + timeout
    while True:
        jobs = api.refresh_jobs(group, env=env)
        open_ = [
            (p, ph, j["state"])
            for p, phases in jobs.items()
            for ph, j in phases.items()
            if j["state"] not in TERMINAL
        ]
        if not open_:
            return jobs
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs still open after {timeout} s: {open_}")
        time.sleep(1.0)


def test_a_group_runs_as_chained_array_jobs(slurm_cluster, archive, write_group, monkeypatch):
    archive("a", n_files=2)
    archive("b", n_files=2, start_year=2005)
    path = group_file(
        write_group,
        "{partition: debug, time_min: 5, memory_mb: 600}",
        """  - {id: first, sources: {glob: a/*.nc}, concat_dims: [time]}
          - {id: second, sources: {glob: b/*.nc}, concat_dims: [time]}
          - {id: broken, sources: {glob: missing/*.nc}}""",
    )
    env = slurm_cluster.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the CLI (as an operator's shell) finds the cluster
    group = api.open_group(path)

    # a dry run writes nothing and submits nothing; it shows the scripts
    jobs = api.submit(group, PHASES, dry_run=True)
    assert [j.job_id for j in jobs] == [None] * 4
    assert "#SBATCH --array=0-2" in jobs[0].script and "#SBATCH --partition=debug" in jobs[0].script
    assert "--dependency=aftercorr" not in jobs[0].script and "--dependency=aftercorr:" in jobs[1].script
    assert not (group.work_dir / "slurm").exists()

    assert main(["run", str(path), "--runner", "slurm", "--phases", ",".join(PHASES)]) == 0
    jobs = wait_for_jobs(group, env, timeout=240)
    rows = {r["project"]: r for r in api.status(group)}
    for pid in ("first", "second"):
        assert rows[pid]["state"] == "done", rows[pid]
        assert {ph: j["state"] for ph, j in rows[pid]["jobs"].items()} == dict.fromkeys(PHASES, "COMPLETED")
    broken = rows["broken"]
    assert broken["state"] == "failed" and broken["phase"] == "init", broken
    assert "matched no files" in broken["reason"]
    assert broken["jobs"]["init"]["state"] == "FAILED" and broken["jobs"]["init"]["exit_code"] == 1
    # its later tasks never ran: cancelled for their unmet dependency, the reason stays init's
    assert {broken["jobs"][ph]["state"] for ph in PHASES[1:]} == {"CANCELLED"}
    # the product of a task equals a local run's
    state = json.loads((group.work_dir / "projects" / "first" / "state.json").read_text())
    assert state["products"][0]["status"] == "valid"
    assert main(["jobs", str(path)]) == 0
    from padocc_like.cli import render_status

    table = render_status("g", api.status(group))
    assert any(
        line.split()[:4] == ["broken", "init", rows["broken"]["jobs"]["init"]["array_task"], "FAILED"]
        for line in table.splitlines()
    ), table


def test_a_timed_out_task_is_retried_with_more_time(slurm_cluster, archive, write_group, tmp_path):
    archive("a", n_files=2)
    mark = tmp_path / "first-attempt"
    # the first attempt's task sleeps past its one-minute limit; the retry does not sleep
    setup = f"'[ -e {mark} ] || {{ touch {mark}; sleep 150; }}'"
    path = group_file(
        write_group,
        f"{{partition: debug, time_min: 1, max_time_min: 3, setup: [{setup}]}}",
        "  - {id: slow, sources: {glob: a/*.nc}, concat_dims: [time]}",
    )
    env = slurm_cluster.env()
    group = api.open_group(path)
    assert api.run(group, ["init"])[0].status == "done"
    (job,) = api.submit(group, ["scan"], env=env)
    jobs = wait_for_jobs(group, env, timeout=200)
    assert jobs["slow"]["scan"]["state"] == "TIMEOUT"
    row = api.project_status(group, "slow")
    assert row["state"] == "failed" and row["error_kind"] == "job-timeout"
    assert f"SLURM task {job.job_id}_0 ran out of time (limit 1 min)" in row["reason"]

    # the retry resubmits scan with twice the time, and the pipeline's later phases after it
    jobs, refused = api.retry(group, "scan", env=env)
    assert refused == {}
    assert [(str(j.phase), j.time_min) for j in jobs] == [("scan", 2), ("compute", 2), ("validate", 2)]
    done = wait_for_jobs(group, env, timeout=150)
    assert done["slow"]["scan"]["state"] == "COMPLETED" and done["slow"]["scan"]["attempt"] == 2
    assert api.project_status(group, "slow")["state"] == "done"


def test_a_submission_error_is_an_error(slurm_cluster, archive, write_group):
    archive("a", n_files=1)
    path = group_file(
        write_group,
        "{partition: no-such-partition}",
        "  - {id: p, sources: {glob: a/*.nc}}",
    )
    group = api.open_group(path)
    with pytest.raises(JobSubmissionError, match=r"invalid partition|no-such-partition"):
        api.submit(group, ["init"], env=slurm_cluster.env())


def test_a_large_project_is_scanned_by_shard_tasks(slurm_cluster, archive, write_group, monkeypatch):
    """24 files with split_files 8: after a local init, three shard tasks scan the files into the
    cache before the scan task, which finds them all there; the product is a local run's."""
    from padocc_like.runners import slurm

    archive("a", n_files=24)
    project = "  - {id: big, sources: {glob: a/*.nc}, concat_dims: [time]}"
    path = group_file(write_group, "{partition: debug, time_min: 5, memory_mb: 600, split_files: 8}", project)
    env = slurm_cluster.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    group = api.open_group(path)
    assert api.run(group, ["init"])[0].status == "done"  # the manifest says how many files

    assert main(["run", str(path), "--runner", "slurm", "--phases", "scan,compute,validate"]) == 0
    jobs = wait_for_jobs(group, env, timeout=150)["big"]
    assert {ph: j["state"] for ph, j in jobs.items()} == dict.fromkeys(PHASES[1:], "COMPLETED")
    assert jobs["scan"]["shards"] == 3 and jobs["scan"]["shard_tasks"] == [0, 2]
    shards = slurm.finished(jobs["scan"]["shard_job"], env)
    assert {i: t["state"] for i, t in shards.items()} == dict.fromkeys(range(3), "COMPLETED")

    # the shard tasks (three processes) wrote the cache; scan and compute only read it
    segments = sorted((group.work_dir / "projects" / "big" / "cache" / "files").glob("scans-*.pkl"))
    assert len(segments) == 3 and len({s.name.rsplit("-", 2)[1] for s in segments}) == 3, segments
    state = json.loads((group.work_dir / "projects" / "big" / "state.json").read_text())
    assert state["products"][0]["status"] == "valid" and state["products"][0]["n_files"] == 24

    local = write_group(
        f"""
        group: g
        work_dir: local
        pipeline: kerchunk-no-catalog
        projects:
        {project}
        """,
        name="local.yaml",
    )
    local_group = api.open_group(local)
    assert {o.status for o in api.run(local_group, PHASES)} == {"done"}
    local_state = json.loads((local_group.work_dir / "projects" / "big" / "state.json").read_text())
    ours, theirs = state["products"][0], local_state["products"][0]
    assert Path(ours["path"]).read_bytes() == Path(theirs["path"]).read_bytes()
    assert ours["sha256"] == theirs["sha256"]
