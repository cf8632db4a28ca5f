"""The loopback SLURM cluster (tests/slurmcluster.py) is a real scheduler: arrays, exit
codes, time limits, scancel and memory limits end in the states a real cluster reports."""

from __future__ import annotations

import sys
import time

import pytest

pytestmark = pytest.mark.slurm


def test_daemons_listen_on_loopback_only(slurm_cluster):
    listening = slurm_cluster.listening()
    assert sorted(listening) == [f"127.0.0.1:{slurm_cluster.port}", f"127.0.0.1:{slurm_cluster.port + 1}"]
    assert not slurm_cluster.sacct_available()  # no accounting database by default


def test_array_job_with_a_failing_task(slurm_cluster):
    jid = slurm_cluster.sbatch('sleep 1\n[ "$SLURM_ARRAY_TASK_ID" != 2 ] || exit 3\n', "--array=0-3")
    states = slurm_cluster.wait(jid, timeout=120)
    assert states == {0: ("COMPLETED", 0), 1: ("COMPLETED", 0), 2: ("FAILED", 3), 3: ("COMPLETED", 0)}
    # the permanent record: one job-completion line per task
    lines = [ln for ln in slurm_cluster.jobcomp_log.read_text().splitlines() if f"ArrayJobId={jid} " in ln]
    assert len(lines) == 4
    assert any("ArrayTaskId=2 " in ln and "JobState=FAILED" in ln and "ExitCode=3:0" in ln for ln in lines)


def test_scancel_of_a_running_job(slurm_cluster):
    jid = slurm_cluster.sbatch("sleep 300\n")
    slurm_cluster.wait_running(jid)
    slurm_cluster.run("scancel", jid)
    assert slurm_cluster.wait(jid, timeout=30) == {None: ("CANCELLED", 0)}
    assert "JobState=CANCELLED" in slurm_cluster.jobcomp_log.read_text()


def test_job_over_its_memory_limit(slurm_cluster):
    code = "b = bytearray(200 * 2**20); b[::4096] = bytes(len(b[::4096])); import time; time.sleep(30)"
    jid = slurm_cluster.sbatch(f"{sys.executable} -c '{code}'\n", "--mem=20M")
    t0 = time.monotonic()
    states = slurm_cluster.wait(jid, timeout=60)
    assert time.monotonic() - t0 < 25  # killed, not slept out
    rec = slurm_cluster.records(jid)[None]
    if slurm_cluster.cgroup:  # cgroup v1 memory controller: the kernel's OOM killer, seen by slurm
        assert states[None].state == "OUT_OF_MEMORY", rec
        assert rec["Reason"] == "OutOfMemory"
    else:  # jobacct_gather/linux OverMemoryKill: sampled and killed with SIGKILL
        assert states[None].state == "FAILED", rec
        assert rec["ExitCode"] == "0:9"


@pytest.mark.slow
def test_time_limit(slurm_cluster):
    # time limits are whole minutes (--time=0:00:05 becomes 1 minute) and slurmctld checks
    # them every 30 s: the job ends TIMEOUT 60-90 s after it started
    jid = slurm_cluster.sbatch("sleep 300\n", "--time=0:00:05")
    slurm_cluster.wait_running(jid)
    rec = slurm_cluster.records(jid)[None]
    assert rec["TimeLimit"] == "00:01:00"
    states = slurm_cluster.wait(jid, timeout=150)
    assert states[None].state == "TIMEOUT"


def test_memory_limit_without_cgroups(slurm_cluster, tmp_path):
    """Where no cgroup v1 memory controller can be used, jobacct_gather/linux's sampling kills
    the job: FAILED with signal 9 (no OUT_OF_MEMORY)."""
    if not slurm_cluster.cgroup:
        pytest.skip("the session cluster already runs without cgroups (test_job_over_its_memory_limit)")
    from slurmcluster import SlurmCluster

    with SlurmCluster(tmp_path / "nocg", cgroup=False) as cluster:
        assert cluster.oom_state == "FAILED"
        code = "b = bytearray(200 * 2**20); b[::4096] = bytes(len(b[::4096])); import time; time.sleep(30)"
        jid = cluster.sbatch(f"{sys.executable} -c '{code}'\n", "--mem=20M")
        assert cluster.wait(jid, timeout=25) == {None: ("FAILED", 0)}
        assert cluster.records(jid)[None]["ExitCode"] == "0:9"
        assert "exceeded memory limit" in (cluster.jobs_dir / f"slurm-{jid}.out").read_text()
