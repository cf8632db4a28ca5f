"""A throw-away single-node SLURM cluster on 127.0.0.1 for the tests.

munged, slurmctld and slurmd (Debian ``slurm-wlm`` + ``munge``) run as root with every
config, key, socket, pid, log and state file under ``root``; nothing goes to ``/etc``.
Clients find the cluster through ``SLURM_CONF`` (:meth:`SlurmCluster.env`).  There is no
accounting database: ``sacct`` says "accounting storage is disabled"
(:meth:`SlurmCluster.sacct_available`); finished jobs are recorded in the job-completion
log :attr:`SlurmCluster.jobcomp_log` (``jobcomp/filetxt``), and ``scontrol show job``
knows them for ``MinJobAge`` (300 s).  ``scripts/slurm_local.sh`` starts the same cluster
by hand.

Gotchas handled here: the hostname is not ``localhost`` (``slurmd -N localhost``);
munged wants a world-executable socket directory and a 0600 key; the daemons would
listen on 0.0.0.0 without ``CommunicationParameters=NoCtldInAddrAny,NoInAddrAny``;
``RealMemory`` must not exceed what ``slurmd -C`` measures; daemons are started in their
own session (there is no init system).  Memory limits: with a writable cgroup v1 memory
hierarchy the cgroup plugins enforce ``--mem`` and an over-limit job ends
``OUT_OF_MEMORY``; otherwise ``jobacct_gather/linux`` with ``OverMemoryKill`` samples every
second and kills it, and the job ends ``FAILED`` with signal 9 (:attr:`oom_state`).
``FirstJobId`` is random so that concurrent clusters do not share cgroup directories.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

NODE = "localhost"
PARTITION = "debug"
MAX_TIME_MINUTES = 30
_BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
_FIELD = re.compile(r"(\w+)=(\S*)")


class TaskState(NamedTuple):
    state: str  # COMPLETED, FAILED, TIMEOUT, CANCELLED, OUT_OF_MEMORY, RUNNING, PENDING, ...
    exit_code: int  # the exit status; a signal that killed the job is in records()' ExitCode "0:9"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(lo: int = 30000, hi: int = 40000) -> int:
    """A port P with P and P+1 free on 127.0.0.1 (slurmctld, slurmd)."""
    start = lo + (os.getpid() * 11) % (hi - lo)
    for i in range(0, hi - lo, 2):
        p = lo + (start - lo + i) % (hi - lo - 2)
        if _port_free(p) and _port_free(p + 1):
            return p
    raise RuntimeError(f"no free port pair for SLURM in {lo}..{hi}")


def cgroup_v1_memory() -> bool:
    """True when the cgroup v1 memory and freezer hierarchies are mounted and writable."""
    mem, frz = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/freezer")
    return (mem / "memory.limit_in_bytes").exists() and frz.is_dir() and os.access(mem, os.W_OK)


def _parse(line: str) -> dict[str, str]:
    return dict(_FIELD.findall(line))


class SlurmCluster:
    """munged + slurmctld + slurmd with their state under ``root``."""

    def __init__(self, root: Path, port: int | None = None, cgroup: bool | None = None) -> None:
        self.root = Path(root)
        self.port = port
        self.cgroup = cgroup_v1_memory() if cgroup is None else cgroup
        self.etc, self.log_dir, self.run_dir = self.root / "etc", self.root / "log", self.root / "run"
        self.munge_dir, self.jobs_dir = self.root / "munge", self.root / "jobs"
        self.conf = self.etc / "slurm.conf"
        self.munge_socket = self.munge_dir / "munge.socket.2"  # see _socket_dir()
        self.jobcomp_log = self.log_dir / "jobcomp.txt"
        self.start_seconds: float | None = None
        self._n_scripts = 0

    # -- discovery ---------------------------------------------------------
    @staticmethod
    def available() -> str | None:
        """Why the cluster cannot run here, or None when it can."""
        missing = [b for b in _BINARIES if shutil.which(b) is None]
        if missing:
            return (
                f"SLURM binaries missing: {' '.join(missing)} "
                "(apt-get install --no-install-recommends slurm-wlm munge)"
            )
        if os.geteuid() != 0:
            return "the loopback SLURM cluster runs its daemons as root; not root"
        return None

    @property
    def oom_state(self) -> str:
        """How a job over its ``--mem`` ends here."""
        return "OUT_OF_MEMORY" if self.cgroup else "FAILED"

    def env(self) -> dict[str, str]:
        """Environment for clients (sbatch, squeue, dask-jobqueue); jobs inherit it."""
        return {"SLURM_CONF": str(self.conf)}

    def _pidfiles(self) -> dict[str, Path]:
        return {
            "slurmd": self.run_dir / "slurmd.pid",
            "slurmctld": self.run_dir / "slurmctld.pid",
            "munged": self.munge_dir / "munged.pid",
        }

    @staticmethod
    def _alive(pidfile: Path, name: str) -> int | None:
        try:
            pid = int(pidfile.read_text().strip())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if name.encode() in cmd else None

    def pids(self) -> dict[str, int | None]:
        return {name: self._alive(f, name) for name, f in self._pidfiles().items()}

    def running(self) -> bool:
        return all(self.pids().values())

    def log_tail(self, n: int = 25) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            try:
                lines = (self.log_dir / name).read_text(errors="replace").splitlines()[-n:]
            except OSError:
                lines = ["(no log)"]
            out.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(out)

    # -- commands ----------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client (or daemon) command against this cluster."""
        r = subprocess.run(
            cmd,
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # daemons must outlive the caller's process group
        )
        if check and r.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} exited with {r.returncode}: {r.stderr.strip()}\n{self.log_tail()}"
            )
        return r

    def _wait(self, what: str, ok, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.log_tail()}")
            time.sleep(0.1)

    # -- lifecycle ---------------------------------------------------------
    def _write_config(self) -> None:
        cpus = os.cpu_count() or 1
        probe = self.run("slurmd", "-C").stdout
        mem = int(re.search(r"RealMemory=(\d+)", probe).group(1))  # type: ignore[union-attr]
        if self.cgroup:
            plugins = (
                "ProctrackType=proctrack/cgroup\nTaskPlugin=task/cgroup\n"
                "JobAcctGatherType=jobacct_gather/cgroup\n"
            )
            (self.etc / "cgroup.conf").write_text(
                "CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\n"
                "ConstrainRAMSpace=yes\nConstrainSwapSpace=yes\n"
            )
        else:
            plugins = (
                "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
                "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherParams=OverMemoryKill\n"
            )
        first_job = random.randrange(1, 900) * 10_000
        text = f"""# generated by tests/slurmcluster.py
ClusterName=localtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={self.port}
SlurmdPort={self.port + 1}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.munge_socket.parent / "spool"}/%n
SlurmctldPidFile={self.run_dir / "slurmctld.pid"}
SlurmdPidFile={self.run_dir / "slurmd.pid"}
SlurmctldLogFile={self.log_dir / "slurmctld.log"}
SlurmdLogFile={self.log_dir / "slurmd.log"}
{plugins}JobAcctGatherFrequency=task=1
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_log}
FirstJobId={first_job}
ReturnToService=2
MinJobAge=300
InactiveLimit=0
OverTimeLimit=0
KillWait=2
Waittime=0
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime={MAX_TIME_MINUTES} State=UP
"""
        old = self.conf.read_text() if self.conf.exists() else ""
        # FirstJobId only matters for a new state directory: keep a running config unchanged
        if re.sub(r"FirstJobId=\d+", "", old) != re.sub(r"FirstJobId=\d+", "", text):
            self.conf.write_text(text)

    def _short_dir(self) -> Path:
        """The directory for the munge socket and slurmd's spool (its step sockets): munged
        refuses a socket whose directories are not all world-executable (pytest's temp dirs
        are 0700), and a unix socket path has at most 108 bytes. ``root/munge`` when it
        qualifies, else a 0755 directory under /tmp (removed by stop())."""
        m = re.search(r"AuthInfo=socket=(\S+)", self.conf.read_text()) if self.conf.exists() else None
        if m and self.pids()["munged"]:
            return Path(m.group(1)).parent  # keep the running munged's
        d = self.munge_dir.resolve()
        if all(p.stat().st_mode & 0o001 for p in (d, *d.parents)) and len(str(d)) < 50:
            return self.munge_dir
        tmp = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
        tmp.chmod(0o755)
        return tmp

    def _node_state(self) -> str:
        r = self.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False, timeout=10)
        return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else ""

    def start(self, timeout: float = 30.0) -> SlurmCluster:
        """Start whatever is not running (idempotent); return once the node is idle."""
        reason = self.available()
        if reason:
            raise RuntimeError(reason)
        t0 = time.monotonic()
        for d in (
            self.etc,
            self.log_dir,
            self.run_dir,
            self.munge_dir,
            self.jobs_dir,
            self.root / "state",
        ):
            d.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            m = re.search(r"SlurmctldPort=(\d+)", self.conf.read_text()) if self.conf.exists() else None
            self.port = int(m.group(1)) if m and self.pids()["slurmctld"] else free_port_pair()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _start(self, timeout: float) -> None:
        self.munge_dir.chmod(0o755)
        short = self._short_dir()
        self.munge_socket = short / "munge.socket.2"
        (short / "spool").mkdir(exist_ok=True)
        self._write_config()
        pids = self.pids()
        if not pids["munged"]:
            key = self.munge_dir / "munge.key"
            if not key.exists() or key.stat().st_size == 0:
                key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
            for p in (self.munge_socket, Path(f"{self.munge_socket}.lock")):
                p.unlink(missing_ok=True)
            self.run(
                "munged",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.munge_dir / 'munged.pid'}",
                f"--log-file={self.log_dir / 'munged.log'}",
                f"--seed-file={self.munge_dir / 'munged.seed'}",
                "--num-threads=4",
            )
            self._wait("munged", lambda: self.munge_socket.exists(), timeout)
        if not pids["slurmctld"]:
            self.run("slurmctld", "-f", str(self.conf))
            self._wait(
                "slurmctld",
                lambda: "UP" in self.run("scontrol", "ping", check=False, timeout=10).stdout,
                timeout,
            )
        if not pids["slurmd"]:
            self.run("slurmd", "-f", str(self.conf), "-N", NODE)
        deadline = time.monotonic() + timeout
        while (st := self._node_state()) not in ("idle", "mixed", "allocated", "completing"):
            if st.startswith(("down", "drain")):
                self.run("scontrol", "update", f"nodename={NODE}", "state=resume", check=False)
            if time.monotonic() > deadline:
                raise RuntimeError(f"node state {st!r} after {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        """Cancel every job, stop the daemons, remove sockets and pid files (idempotent)."""
        if self.pids()["slurmctld"]:
            self.run("scancel", "--full", f"--partition={PARTITION}", check=False, timeout=10)
            with contextlib.suppress(RuntimeError):
                self._wait(
                    "the queue to drain",
                    lambda: not self.run("squeue", "-h", check=False, timeout=10).stdout.strip(),
                    10,
                )
        for name, pidfile in self._pidfiles().items():
            pid = self._alive(pidfile, name)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)
        for p in (self.munge_socket, Path(f"{self.munge_socket}.lock")):
            p.unlink(missing_ok=True)
        if self.munge_socket.parent != self.munge_dir and self.munge_socket.parent.parent == Path("/tmp"):
            shutil.rmtree(self.munge_socket.parent, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- jobs --------------------------------------------------------------
    def sacct_available(self) -> bool:
        """Whether ``sacct`` works (it does not without slurmdbd: "accounting storage is disabled")."""
        return self.run("sacct", "-n", "-X", check=False, timeout=10).returncode == 0

    def sbatch(self, script_text: str, *args: str) -> str:
        """Submit a batch script; returns the job id. Output goes to ``jobs/`` unless ``args``
        say otherwise (later options win)."""
        self._n_scripts += 1
        script = self.jobs_dir / f"job-{os.getpid()}-{self._n_scripts}.sh"
        if not script_text.startswith("#!"):
            script_text = "#!/bin/bash\n" + script_text
        script.write_text(script_text)
        out = self.run(
            "sbatch",
            "--parsable",
            f"--chdir={self.jobs_dir}",
            f"--output={self.jobs_dir}/slurm-%j.out",
            *args,
            str(script),
        ).stdout
        return out.strip().split(";")[0]

    def in_queue(self, job_id: str) -> bool:
        r = self.run("squeue", "-h", "-j", str(job_id), "-o", "%i %T", check=False, timeout=10)
        return r.returncode == 0 and bool(r.stdout.strip())

    def wait(self, job_id: str, timeout: float = 120.0) -> dict[int | None, TaskState]:
        """Poll until the job (every array task) has left the queue; returns :meth:`states`."""
        self._wait(f"job {job_id} to leave the queue", lambda: not self.in_queue(job_id), timeout)
        return self.states(job_id)

    def wait_running(self, job_id: str, timeout: float = 60.0) -> None:
        """Poll until the job (or one array task) is RUNNING."""
        self._wait(
            f"job {job_id} to run",
            lambda: any(s.state == "RUNNING" for s in self.states(job_id).values()),
            timeout,
        )

    def records(self, job_id: str) -> dict[int | None, dict[str, str]]:
        """Every field per task (key: ArrayTaskId, None for a plain job): the job-completion
        log's lines, overridden by ``scontrol show job`` while it still knows the job."""
        jid = str(job_id)
        recs: dict[int | None, dict[str, str]] = {}

        def add(fields: dict[str, str]) -> None:
            task = fields.get("ArrayTaskId")
            if task is None:
                recs[None] = fields
            elif task.isdigit():
                recs[int(task)] = fields
            # a range ("4-7", "4-7%2") is the not yet started remainder of an array

        with contextlib.suppress(FileNotFoundError):
            for line in self.jobcomp_log.read_text(errors="replace").splitlines():
                f = _parse(line)
                if f.get("ArrayJobId") == jid or (f.get("JobId") == jid and "ArrayJobId" not in f):
                    add(f)
        r = self.run("scontrol", "-o", "show", "job", jid, check=False, timeout=10)
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                f = _parse(line)
                if f.get("ArrayJobId", f.get("JobId")) == jid:
                    add(f)
        return recs

    def states(self, job_id: str) -> dict[int | None, TaskState]:
        """``{task_id: (state, exit_code)}``; task_id None for a job that is not an array."""
        out = {}
        for task, f in self.records(job_id).items():
            code = f.get("ExitCode", "0:0").split(":")[0]
            out[task] = TaskState(f.get("JobState", "UNKNOWN"), int(code) if code.isdigit() else -1)
        return out

    def listening(self) -> list[str]:
        """``addr:port`` of the daemons' listening TCP sockets (from ``/proc/net/tcp*``)."""
        ports = {self.port, (self.port or 0) + 1}
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    local, st = line.split()[1], line.split()[3]
                    addr, port = local.split(":")
                    if st == "0A" and int(port, 16) in ports:  # LISTEN
                        if len(addr) == 8:
                            ip = socket.inet_ntoa(bytes.fromhex(addr)[::-1])
                        else:
                            ip = "v6:" + addr
                        found.append(f"{ip}:{int(port, 16)}")
        return sorted(found)
