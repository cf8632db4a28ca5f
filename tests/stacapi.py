"""A throw-away STAC API on 127.0.0.1 for the tests: stac-fastapi-pgstac over PostgreSQL + PostGIS.

Steps (the tested recipe of the catalog research notes, section "A real STAC API on loopback"):
``initdb`` a private cluster (as the ``postgres`` user when we run as root: PostgreSQL refuses
to run as root), ``pg_ctl start`` on a free loopback port, ``CREATE DATABASE stac``,
``pypgstac migrate`` (it creates the postgis, btree_gist and unaccent extensions), then
``uvicorn stac_fastapi.pgstac.app:create_app --factory`` with the Transactions extensions on,
polled on ``/_mgmt/ping``.

The API's Python packages (``API_PINS``) live in their own venv, never in the project's
(their pins would clash with ours): ``$STAC_API_VENV``, else a cache shared by test sessions,
``~/.cache/padocc-like/stac-api-venv-<hash of the pins and the Python>``, created with pip on
first use (about 30 s; later starts take a few seconds).  ``scripts/stac_api_local.sh`` starts
the same server by hand.

System needs (Debian): ``postgresql`` and ``postgresql-15-postgis-3``; ``.ci/run`` installs them.
``$STAC_API_PG_BIN`` picks the PostgreSQL bin directory (default: the newest
``/usr/lib/postgresql/*/bin``, else the one of ``pg_config`` on ``PATH``).

Gotchas handled here: ``PGPASSWORD`` must be set even with trust auth (the API's settings
require it); transactions are off unless ``ENABLE_TRANSACTIONS_EXTENSIONS=true``; pytest's
temporary directories are private to root, so as root the cluster lives in its own
``postgres``-owned temporary directory (removed by ``stop()``; its log is copied under ``root``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# Tested together (research notes, section 6): pgstac schema 0.10.0, stac-fastapi 7.x.
API_PINS = ("pypgstac[psycopg]==0.10.0", "stac-fastapi-pgstac==7.2.0", "uvicorn==0.54.0")
DATABASE = "stac"
PG_SUPERUSER = "postgres"


# -- discovery ---------------------------------------------------------------
def find_pg_bin() -> Path | None:
    """The PostgreSQL server's bin directory (with initdb, pg_ctl, postgres, psql)."""
    env = os.environ.get("STAC_API_PG_BIN")
    candidates: list[Path] = []
    if env:
        candidates.append(Path(env))
    else:

        def _major(p: Path) -> float:
            try:
                return float(p.parent.name)
            except ValueError:
                return -1.0

        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major, reverse=True)
        pg_config = shutil.which("pg_config")
        if pg_config:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
                candidates.append(Path(out.stdout.strip()))
    for c in candidates:
        if all(os.access(c / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres", "psql")):
            return c
    return None


def pg_sharedir(pg_bin: Path) -> Path | None:
    """Where the server looks for extensions (``<sharedir>/extension/*.control``)."""
    pg_config = pg_bin / "pg_config"
    if os.access(pg_config, os.X_OK):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
    # Debian layout: /usr/lib/postgresql/15/bin -> /usr/share/postgresql/15
    guess = Path("/usr/share/postgresql") / pg_bin.parent.name
    return guess if guess.is_dir() else None


def default_venv() -> Path:
    """The shared API venv: its name carries a hash of the pins and of the Python that makes it."""
    key = json.dumps([API_PINS, sys.version_info[:2], sys.base_prefix]).encode()
    digest = hashlib.sha256(key).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "padocc-like" / f"stac-api-venv-{digest}"


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_root() -> bool:
    return os.geteuid() == 0


class StacApiServer:
    """One PostgreSQL cluster + one stac-fastapi-pgstac process with their state under ``root``."""

    def __init__(self, root: Path, venv: Path | None = None) -> None:
        self.root = Path(root)
        self.venv = (
            Path(venv) if venv is not None else Path(os.environ.get("STAC_API_VENV") or default_venv())
        )
        self.log_dir = self.root / "log"
        self.pg_dir: Path | None = None  # data directory, socket and server log
        self.pg_port: int | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None
        self.timings: dict[str, float] = {}

    # -- discovery ---------------------------------------------------------
    @staticmethod
    def available() -> str | None:
        """Why the server cannot run here, or None when it can."""
        pg_bin = find_pg_bin()
        if pg_bin is None:
            return (
                "PostgreSQL server binaries not found (Debian: apt-get install postgresql "
                "postgresql-15-postgis-3; or set STAC_API_PG_BIN)"
            )
        share = pg_sharedir(pg_bin)
        if share is None or not (share / "extension" / "postgis.control").is_file():
            return (
                f"PostGIS extension not installed for the PostgreSQL in {pg_bin} "
                f"(Debian: apt-get install postgresql-{pg_bin.parent.name}-postgis-3)"
            )
        if _as_root():
            try:
                pwd.getpwnam(PG_SUPERUSER)
            except KeyError:
                return f"running as root and there is no {PG_SUPERUSER!r} user to run PostgreSQL as"
        return None

    @property
    def url(self) -> str:
        """The API's base URL."""
        if self.port is None:
            raise RuntimeError("server has no port yet: call start()")
        return f"http://127.0.0.1:{self.port}"

    @property
    def dsn(self) -> str:
        if self.pg_port is None:
            raise RuntimeError("server has no port yet: call start()")
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.pg_port}/{DATABASE}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict[str, str]:
        """Environment for clients: the API URL and libpq's settings for the database."""
        return {
            "STAC_API_URL": self.url,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.pg_port),
            "PGUSER": PG_SUPERUSER,
            "PGDATABASE": DATABASE,
            "PGPASSWORD": "unused",
        }

    # -- logs ----------------------------------------------------------------
    @staticmethod
    def _tail(path: Path, n: int) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def log_tail(self, n: int = 30) -> str:
        parts = []
        for name in ("venv.log", "setup.log", "postgres.log", "api.log"):
            path = self.log_dir / name
            if name == "postgres.log" and self.pg_dir is not None:
                path = self.pg_dir / "postgres.log"
            if path.is_file():
                parts.append(f"--- {name} ---\n{self._tail(path, n)}")
        return "\n".join(parts) or "(no log)"

    def _fail(self, what: str) -> RuntimeError:
        tail = self.log_tail()
        self.stop()
        return RuntimeError(f"STAC API: {what}; log tail:\n{tail}")

    # -- the API venv --------------------------------------------------------
    def _venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    def ensure_venv(self, timeout: float = 900.0) -> Path:
        """Create the API venv with pip when absent (a lock guards parallel sessions)."""
        done = self.venv / ".complete"
        if done.is_file():
            return self.venv
        self.venv.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.venv.parent / f".{self.venv.name}.lock"
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if done.is_file():
                return self.venv
            if self.venv.exists():  # a half-made one from an interrupted run
                shutil.rmtree(self.venv)
            log = self.log_dir / "venv.log"
            with log.open("ab") as out:
                for cmd in (
                    [sys.executable, "-m", "venv", str(self.venv)],
                    [
                        str(self._venv_python()),
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        *API_PINS,
                    ],
                ):
                    try:
                        r = subprocess.run(
                            cmd,
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            timeout=timeout,
                            env=self._clean_env(),
                        )
                    except subprocess.TimeoutExpired:
                        r = None
                    if r is None or r.returncode != 0:
                        shutil.rmtree(self.venv, ignore_errors=True)
                        raise RuntimeError(
                            f"could not create the STAC API venv {self.venv} ({' '.join(cmd[:4])} ...); "
                            f"log tail:\n{self._tail(log, 30)}"
                        )
            done.write_text("\n".join(API_PINS) + "\n")
        return self.venv

    @staticmethod
    def _clean_env() -> dict[str, str]:
        env = dict(os.environ)
        for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
            env.pop(k, None)
        return env

    # -- PostgreSQL ------------------------------------------------------------
    def _pg_user_kwargs(self) -> dict:
        if not _as_root():
            return {}
        pw = pwd.getpwnam(PG_SUPERUSER)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": self.pg_dir}

    def _pg_env(self) -> dict[str, str]:
        env = self._clean_env()
        for k in list(env):
            if k.startswith("PG"):
                del env[k]
        env["LC_ALL"] = "C.UTF-8"
        if _as_root():
            env["HOME"] = pwd.getpwnam(PG_SUPERUSER).pw_dir
            env["USER"] = env["LOGNAME"] = PG_SUPERUSER
        return env

    def _run_setup(
        self, cmd: list[str], what: str, timeout: float, as_pg: bool = False, check: bool = True
    ) -> int:
        """Run one setup command with its output in ``log/setup.log``; raise (and stop) on failure."""
        kw = self._pg_user_kwargs() if as_pg else {}
        env = self._pg_env() if as_pg else {**self._clean_env(), "PGPASSWORD": "unused"}
        with (self.log_dir / "setup.log").open("ab") as out:
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            try:
                r = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    env=env,
                    **kw,
                )
            except subprocess.TimeoutExpired:
                raise self._fail(f"{what} did not finish within {timeout:.0f} s") from None
            except OSError as e:
                raise self._fail(f"{what} could not run: {e}") from e
        if check and r.returncode != 0:
            raise self._fail(f"{what} failed with exit code {r.returncode}")
        return r.returncode

    def _make_pg_dir(self) -> Path:
        if not _as_root():
            d = self.root / "pg"
            d.mkdir(parents=True, exist_ok=True)
            return d
        # pytest's temporary directories are private to root: the postgres user could not
        # reach a directory below them, so the cluster gets its own one.
        d = Path(tempfile.mkdtemp(prefix="stacapi-pg-"))
        pw = pwd.getpwnam(PG_SUPERUSER)
        os.chown(d, pw.pw_uid, pw.pw_gid)
        return d

    def _start_postgres(self, pg_bin: Path) -> None:
        self.pg_dir = self._make_pg_dir()
        data = self.pg_dir / "data"
        t = time.monotonic()
        self._run_setup(
            [
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            "initdb",
            120,
            as_pg=True,
        )
        self.timings["initdb"] = time.monotonic() - t
        t = time.monotonic()
        pg_log = self.pg_dir / "postgres.log"
        for attempt in range(3):  # a free port can be taken before the server binds it
            self.pg_port = free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -c unix_socket_directories={self.pg_dir} "
                # a throw-away cluster: no need to wait for the disk
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            cmd = [
                str(pg_bin / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(pg_log),
                "-w",
                "-t",
                "60",
                "-o",
                opts,
                "start",
            ]
            if self._run_setup(cmd, "pg_ctl start", 90, as_pg=True, check=False) == 0:
                break
            if attempt == 2 or "already in use" not in self._tail(pg_log, 5):
                raise self._fail("pg_ctl start failed")
        self.timings["pg_start"] = time.monotonic() - t
        t = time.monotonic()
        self._run_setup(
            [
                str(pg_bin / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.pg_port),
                "-U",
                PG_SUPERUSER,
                "-d",
                "postgres",
                "-c",
                f"CREATE DATABASE {DATABASE};",
            ],
            "CREATE DATABASE",
            60,
        )
        self._run_setup(
            [str(self._venv_python()), "-m", "pypgstac.pypgstac", "migrate", "--dsn", self.dsn],
            "pypgstac migrate",
            180,
        )
        self.timings["migrate"] = time.monotonic() - t

    def _stop_postgres(self) -> None:
        pg_dir, self.pg_dir = self.pg_dir, None
        if pg_dir is None:
            return
        data = pg_dir / "data"
        if (data / "postmaster.pid").is_file():
            pg_bin = find_pg_bin()
            stopped = False
            if pg_bin is not None:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    r = subprocess.run(
                        [str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=60,
                        env=self._pg_env(),
                        **{**self._pg_user_kwargs(), "cwd": pg_dir},
                    )
                    stopped = r.returncode == 0
            if not stopped:  # the postmaster's pid is the first line of postmaster.pid
                with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                    os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGQUIT)
        # keep the server log with the rest
        with contextlib.suppress(OSError):
            self.log_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pg_dir / "postgres.log", self.log_dir / "postgres.log")
        if pg_dir != self.root / "pg":
            shutil.rmtree(pg_dir, ignore_errors=True)

    # -- the API ---------------------------------------------------------------
    def _ping(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/_mgmt/ping", timeout=2) as r:
                return r.status == 200 and json.loads(r.read()).get("message") == "PONG"
        except (OSError, ValueError):
            return False

    def _api_env(self) -> dict[str, str]:
        env = self._clean_env()
        env.update(
            {
                # PGPASSWORD is required by the settings model even with trust authentication
                "PGUSER": PG_SUPERUSER,
                "PGPASSWORD": "unused",
                "PGHOST": "127.0.0.1",
                "PGPORT": str(self.pg_port),
                "PGDATABASE": DATABASE,
                # the Transactions extensions (POST/PUT/DELETE) are off by default
                "ENABLE_TRANSACTIONS_EXTENSIONS": "true",
            }
        )
        return env

    # -- lifecycle ---------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> StacApiServer:
        """Start (no-op when running): venv if absent, PostgreSQL, migration, API; wait for ping."""
        if self.running():
            return self
        reason = self.available()
        if reason is not None:
            raise RuntimeError(reason)
        pg_bin = find_pg_bin()
        assert pg_bin is not None
        t0 = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_venv()
        self.timings["venv"] = time.monotonic() - t0
        self._start_postgres(pg_bin)
        t = time.monotonic()
        for attempt in range(3):
            self.port = free_port()
            with (self.log_dir / "api.log").open("ab") as out:
                self.proc = subprocess.Popen(
                    [
                        str(self._venv_python()),
                        "-m",
                        "uvicorn",
                        "stac_fastapi.pgstac.app:create_app",
                        "--factory",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._api_env(),
                    cwd=self.root,
                    start_new_session=True,
                )
            deadline = time.monotonic() + timeout
            while not self._ping():
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    self.proc = None
                    if attempt < 2 and "address already in use" in self._tail(self.log_dir / "api.log", 5):
                        break
                    raise self._fail(f"uvicorn exited with {code}")
                if time.monotonic() > deadline:
                    raise self._fail(
                        f"the API did not answer on {self.url}/_mgmt/ping within {timeout:.0f} s"
                    )
                time.sleep(0.05)
            if self.running():
                break
        self.timings["api"] = time.monotonic() - t
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the API (TERM, then KILL), then PostgreSQL; idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._stop_postgres()

    def __enter__(self) -> StacApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients -------------------------------------------------------------------
    def request(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        """One JSON request to the API: (status, decoded body or text). Errors are returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")
