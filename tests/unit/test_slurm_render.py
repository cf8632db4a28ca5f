"""The SLURM runner's plain parts: resources, escalation, packing and the rendered script
(hostile strings stay inert: every value that reaches the shell is quoted)."""

from __future__ import annotations

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
