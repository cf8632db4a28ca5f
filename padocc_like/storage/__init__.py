"""Named stores at run time: credentials resolved, file systems opened, byte ranges read.

The configuration (:class:`~padocc_like.config.models.StoreConfig`) says where files are
and where their credentials come from; a :class:`Storage` holds the stores of a run with
their credentials resolved. Only the runner and the CLI build one (they read the
environment); it is made *active* for the run and handed to worker processes by
:func:`padocc_like.runners.pool.process_pool`, so that every reader of a source URL
(scanners, combine, validation, writers) resolves it the same way.

Secrets live only in this object's memory: its ``repr`` hides them and nothing here
writes them anywhere. URLs carry no credentials.
"""

from __future__ import annotations

import configparser
import contextlib
import multiprocessing.util
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.models import StoreConfig
from ..errors import StorageAccessError, StorageError, StorageNotFoundError, StorageUnavailableError

REMOTE_PAGE_SIZE = 1 << 14
"""Bytes per ranged read of a remote file's metadata (16 KiB): HDF5 metadata sits in small
pieces anywhere in a file, so large read-ahead mostly fetches chunk data."""
REMOTE_HEAD_SIZE = 1 << 16
"""Bytes of a remote file read first, in one request (64 KiB): the superblock, the root group
and, in files written by netCDF-C, usually all the metadata (bench/bench_s3.py measured 31 kB
needed per file of the benchmark archive, all within the first 64 KiB)."""


def is_remote(url: str) -> bool:
    """Whether ``url`` is read through fsspec (``s3://``, ``https://``...) rather than as a local path."""
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> str:
    """The local path of a plain path or ``file://`` URL."""
    return url.removeprefix("file://")


def _botocore_config() -> dict[str, Any]:
    # a wrong key or a missing bucket fails at once; a stopped server fails after a few
    # seconds (botocore's own retries, then s3fs's), never a retry storm
    return {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 3, "read_timeout": 60}


@dataclass
class Storage:
    """The stores of a run, by name, with credentials resolved from ``env`` when first used."""

    stores: Mapping[str, StoreConfig] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The environment the credentials come from (only the variables the stores name are kept)."""

    def __post_init__(self) -> None:
        self.stores = dict(self.stores)
        wanted: set[str] = {"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"}
        for store in self.stores.values():
            creds = store.credentials
            if store.protocol == "s3" and (creds is None or creds.source == "env"):
                c = creds or _default_credentials()
                wanted.update(v for v in (c.access_key_env, c.secret_key_env, c.token_env) if v)
        self.env = {k: v for k, v in self.env.items() if k in wanted}
        self._fs: dict[str, Any] = {}
        self._obstores: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Storage(stores={sorted(self.stores)})"

    def __getstate__(self) -> dict[str, Any]:
        return {"stores": self.stores, "env": self.env}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.stores, self.env = state["stores"], state["env"]
        self._fs, self._obstores, self._lock = {}, {}, threading.Lock()

    # --- names and URLs ------------------------------------------------------------------
    def store(self, name: str) -> StoreConfig:
        try:
            return self.stores[name]
        except KeyError:
            raise StorageError(
                f"no store named {name!r} (known: {', '.join(sorted(self.stores)) or 'none'})"
            ) from None

    def url(self, name: str, key: str = "") -> str:
        """The URL (a path for ``file`` stores) of ``key`` inside store ``name``."""
        root = self.store(name).root_url
        key = key.lstrip("/")
        return f"{root.rstrip('/')}/{key}" if key else root

    def store_for(self, url: str) -> str | None:
        """The store whose location holds ``url`` (the longest match), or None."""
        best: tuple[int, str] | None = None
        for name, store in self.stores.items():
            root = store.root_url.rstrip("/")
            inside = url == root or url.startswith(root + "/")
            if inside and (best is None or len(root) > best[0]):
                best = (len(root), name)
        return best[1] if best else None

    # --- credentials ---------------------------------------------------------------------
    def options(self, name: str) -> dict[str, Any]:
        """fsspec storage options of store ``name``, credentials included (never persist them)."""
        store = self.store(name)
        if store.protocol == "file":
            return {}
        if store.protocol in ("https", "http"):
            return {} if store.verify_tls else {"client_kwargs": {"verify_ssl": False}}
        opts: dict[str, Any] = {"config_kwargs": _botocore_config()}
        client: dict[str, Any] = {}
        if store.endpoint_url:
            client["endpoint_url"] = store.endpoint_url
        if store.region:
            client["region_name"] = store.region
        if not store.verify_tls:
            client["verify"] = False
        if client:
            opts["client_kwargs"] = client
        opts.update(self._credentials(name, store))
        return opts

    def public_options(self, name: str) -> dict[str, Any]:
        """The storage options a consumer needs besides their own credentials: no secrets."""
        return self.store(name).public_options()

    def _credentials(self, name: str, store: StoreConfig) -> dict[str, Any]:
        creds = store.credentials or _default_credentials()
        if creds.source == "anonymous":
            return {"anon": True}
        if creds.source == "profile":
            return {"profile": creds.profile}
        if creds.source == "file":
            return _from_credentials_file(
                name, Path(creds.path or "").expanduser(), creds.profile or "default"
            )
        key, secret = self.env.get(creds.access_key_env), self.env.get(creds.secret_key_env)
        missing = [v for v, val in ((creds.access_key_env, key), (creds.secret_key_env, secret)) if not val]
        if missing:
            raise StorageAccessError(
                f"store {name!r}: credentials come from the environment, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set"
            )
        out = {"key": key, "secret": secret}
        if creds.token_env and self.env.get(creds.token_env):
            out["token"] = self.env[creds.token_env]
        return out

    def secrets(self) -> list[str]:
        """Every secret value this object holds (for tests that prove none leaks)."""
        out = []
        for name, store in self.stores.items():
            if store.protocol == "s3":
                with contextlib.suppress(StorageError):
                    opts = self._credentials(name, store)
                    out += [v for k, v in opts.items() if k in ("secret", "token") and v]
        return out

    # --- file systems --------------------------------------------------------------------
    def filesystem(self, url: str) -> tuple[Any, str]:
        """The fsspec file system that serves ``url`` (with its store's options) and the path in it."""
        import fsspec

        name = self.store_for(url)
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        cache_key = name or f"<{protocol}>"
        with self._lock:
            fs = self._fs.get(cache_key)
            if fs is None:
                opts = self.options(name) if name else {}
                try:
                    fs = fsspec.filesystem(protocol, **opts)
                except ImportError as err:
                    raise StorageError(f"{url}: reading {protocol}:// needs the 's3' extra ({err})") from err
                self._fs[cache_key] = fs
        return fs, fs._strip_protocol(url) if protocol != "file" else local_path(url)

    def range_reader(self, url: str) -> Callable[[int, int], bytes] | None:
        """A fast ``read(offset, length)`` for an object of an S3 store, through obstore (a
        Rust client: about a fifth of s3fs's CPU per request, bench/bench_s3.py), or None
        where obstore is not installed or cannot take the store's credentials (a profile)."""
        name = self.store_for(url)
        if name is None or not url.startswith("s3://"):
            return None
        store = self.store(name)
        if store.credentials is not None and store.credentials.source == "profile":
            return None
        with self._lock:
            client = self._obstores.get(name)
            if client is None:
                client = self._obstores[name] = _obstore_client(name, store, self._credentials(name, store))
        if client is False:
            return None
        import obstore

        bucket_key = url.removeprefix("s3://").split("/", 1)
        key = bucket_key[1] if len(bucket_key) > 1 else ""
        if bucket_key[0] != client[1]:
            return None

        def read(offset: int, length: int) -> bytes:
            return bytes(obstore.get_range(client[0], key, start=offset, length=length))

        return read


def _obstore_client(name: str, store: StoreConfig, creds: dict[str, Any]) -> Any:
    """``(obstore S3Store, bucket)`` for a store, or False when obstore is not installed."""
    try:
        from datetime import timedelta

        from obstore.store import S3Store
    except ImportError:
        return False
    bucket = store.root_url.removeprefix("s3://").split("/", 1)[0]
    config: dict[str, Any] = {"region": store.region or "us-east-1"}
    if store.endpoint_url:
        config["endpoint"] = store.endpoint_url
    if creds.get("anon"):
        config["skip_signature"] = True
    else:
        config["access_key_id"] = creds["key"]
        config["secret_access_key"] = creds["secret"]
        if creds.get("token"):
            config["token"] = creds["token"]
    client_options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=3),
        "timeout": timedelta(seconds=60),
    }
    if store.endpoint_url and store.endpoint_url.startswith("http://"):
        client_options["allow_http"] = True
    if not store.verify_tls:
        client_options["allow_invalid_certificates"] = True
    # as botocore is configured: a wrong key fails at once, a stopped server within seconds
    retry = {
        "max_retries": 2,
        "retry_timeout": timedelta(seconds=10),
        "backoff": {"init_backoff": timedelta(milliseconds=100)},
    }
    return S3Store(bucket, client_options=client_options, retry_config=retry, **config), bucket


_default = Storage()
_active: Storage = _default


def _default_credentials() -> Any:
    from ..config.models import Credentials

    return Credentials()


def _from_credentials_file(name: str, path: Path, profile: str) -> dict[str, Any]:
    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as err:
        raise StorageAccessError(
            f"store {name!r}: cannot read credentials file {path}: {err.strerror}"
        ) from err
    except configparser.Error as err:
        raise StorageAccessError(f"store {name!r}: credentials file {path} is not in INI format") from err
    if not parser.has_section(profile):
        raise StorageAccessError(f"store {name!r}: credentials file {path} has no profile [{profile}]")
    section = parser[profile]
    if not section.get("aws_access_key_id") or not section.get("aws_secret_access_key"):
        raise StorageAccessError(
            f"store {name!r}: profile [{profile}] of {path} lacks aws_access_key_id or aws_secret_access_key"
        )
    out = {"key": section["aws_access_key_id"], "secret": section["aws_secret_access_key"]}
    if section.get("aws_session_token"):
        out["token"] = section["aws_session_token"]
    return out


def activate(storage: Storage | None) -> None:
    """Make ``storage`` the one source URLs resolve through in this process (None: no stores)."""
    global _active
    _active = storage if storage is not None else _default


def active() -> Storage:
    """The storage source URLs resolve through in this process."""
    return _active


@contextlib.contextmanager
def using(storage: Storage | None) -> Iterator[Storage]:
    """Activate ``storage`` for the duration of a block."""
    previous = _active
    activate(storage)
    try:
        yield active()
    finally:
        activate(previous)


# --- reading ---------------------------------------------------------------------------
def translate_error(url: str, err: BaseException) -> StorageError:
    """A storage failure as one of our errors, naming the object and what went wrong."""
    if isinstance(err, StorageError):
        return err
    kind = type(err).__name__
    text = f"{kind}: {err}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else kind
    denied = (
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "PermissionDenied",
        "Unauthenticated",
    )
    if isinstance(err, PermissionError) or any(d in text for d in denied):
        return StorageAccessError(f"{url}: access denied (check the store's credentials): {first}")
    if (
        isinstance(err, FileNotFoundError)
        or kind == "NotFoundError"
        or "NoSuchBucket" in text
        or "NoSuchKey" in text
    ):
        return StorageNotFoundError(f"{url}: no such object or bucket: {first}")
    return StorageUnavailableError(f"{url}: the store did not answer ({kind}: {first})")


class RangeFile:
    """Byte ranges of one file, local (``pread``) or remote (ranged GETs), counting requests and bytes."""

    def __init__(self, url: str, size: int | None = None, storage: Storage | None = None) -> None:
        self.url = url
        self.requests = 0
        self.bytes_read = 0
        self.remote = is_remote(url)
        self._fd: int | None = None
        self._size = size
        if self.remote:
            storage = storage or active()
            self._fast = storage.range_reader(url)
            self._fs, self._path = storage.filesystem(url)
        else:
            self._fd = os.open(local_path(url), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    @property
    def size(self) -> int:
        """The file's size (asked of the store at first use unless given)."""
        if self._size is None:
            if self._fd is not None:
                self._size = os.fstat(self._fd).st_size
            else:
                try:
                    self._size = int(self._fs.info(self._path)["size"])
                except Exception as err:
                    raise translate_error(self.url, err) from err
                self.requests += 1
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        self.requests += 1
        if self._fd is not None:
            data = os.pread(self._fd, length, offset)
        else:
            try:
                if self._fast is not None:
                    data = self._fast(offset, length)
                else:
                    data = self._fs.cat_file(self._path, start=offset, end=offset + length)
            except Exception as err:
                raise translate_error(self.url, err) from err
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RangeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DownloadCache:
    """Whole remote files downloaded for libraries that need a local path (netCDF4-python,
    h5py), kept in a private temporary directory up to ``budget`` bytes (least recently
    used first out), so that the passes of one phase download each file once."""

    def __init__(self, budget: int = 2 << 30) -> None:
        self.budget = budget
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._files: dict[str, tuple[str, int]] = {}  # url -> (path, size), oldest first
        self._lock = threading.Lock()
        self.downloads = 0

    def path(self, url: str) -> str:
        with self._lock:
            hit = self._files.pop(url, None)
            if hit is not None:
                self._files[url] = hit  # most recently used
                return hit[0]
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="padocc-like-downloads-")
                # worker processes end with os._exit: clean up as multiprocessing exits too
                multiprocessing.util.Finalize(self, self.clear, exitpriority=10)
            fs, path = active().filesystem(url)
            target = str(Path(self._dir.name) / f"{self.downloads}{Path(path).suffix}")
            try:
                fs.get_file(path, target)
            except Exception as err:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
                raise translate_error(url, err) from err
            self.downloads += 1
            size = Path(target).stat().st_size
            self._files[url] = (target, size)
            while sum(n for _, n in self._files.values()) > self.budget and len(self._files) > 1:
                old = next(iter(self._files))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._files.pop(old)[0])
            return target

    def clear(self) -> None:
        with self._lock:
            if self._dir is not None:
                self._dir.cleanup()
            self._dir, self._files = None, {}


_downloads = DownloadCache()


def local_path_of(url: str) -> str:
    """A local path holding the file at ``url``: the file itself when local; a download kept
    in this process's :class:`DownloadCache` when remote (for libraries that need a path and
    read the whole file anyway). Noted as the file being opened (:mod:`padocc_like.trace`)."""
    from .. import trace

    trace.opening(url)
    return _downloads.path(url) if is_remote(url) else local_path(url)


def clear_downloads() -> None:
    """Remove this process's downloaded copies (at the end of a phase)."""
    _downloads.clear()


@contextlib.contextmanager
def local_copy(url: str) -> Iterator[str]:
    """A local path holding the file at ``url`` for the ``with`` block (see :func:`local_path_of`)."""
    yield local_path_of(url)


def stat(url: str) -> dict[str, Any]:
    """``{"size", "mtime_ns", "etag"}`` of a file (``etag`` None for local files)."""
    if not is_remote(url):
        st = os.stat(local_path(url))
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "etag": None}
    fs, path = active().filesystem(url)
    try:
        fs.invalidate_cache(path)  # fsspec reuses file systems and their listings: ask the store
        info = fs.info(path)
    except Exception as err:
        raise translate_error(url, err) from err
    return remote_identity(info)


def remote_identity(info: Mapping[str, Any]) -> dict[str, Any]:
    """Size, modification time and ETag from an fsspec ``info`` of a remote object."""
    modified = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    mtime_ns = int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else None
    etag = info.get("ETag") or info.get("etag")
    return {"size": int(info["size"]), "mtime_ns": mtime_ns, "etag": str(etag).strip('"') if etag else None}


def list_remote(pattern_url: str) -> dict[str, dict[str, Any]]:
    """Remote files matching a glob URL, with their identity (one listing per directory level)."""
    fs, pattern = active().filesystem(pattern_url)
    protocol = pattern_url.split("://", 1)[0]
    try:
        # fsspec reuses a file system (and its cached listings) across runs of one process: a
        # listing that identifies files (init, verify_manifest) must ask the store now
        fs.invalidate_cache()
        found = (
            fs.glob(pattern, detail=True) if any(c in pattern for c in "*?[") else {pattern: fs.info(pattern)}
        )
    except FileNotFoundError:
        found = {}
    except Exception as err:
        raise translate_error(pattern_url, err) from err
    if not found and protocol == "s3":  # nothing matched: say so if the bucket itself is missing
        bucket = pattern.split("/", 1)[0]
        try:
            exists = fs.exists(bucket)
        except Exception as err:
            raise translate_error(f"s3://{bucket}", err) from err
        if not exists:
            raise StorageNotFoundError(f"s3://{bucket}: the bucket does not exist (listing {pattern_url})")
    return {
        f"{protocol}://{p}": remote_identity(info)
        for p, info in found.items()
        if info.get("type", "file") == "file"
    }


def sources_options(urls: list[str]) -> dict[str, Any] | None:
    """The kerchunk engine's options to read files at ``urls`` (``remote_protocol`` and
    ``remote_options``, with credentials); None for local files. One protocol and store only."""
    remote = [u for u in urls if is_remote(u)]
    if not remote:
        return None
    protocols = {u.split("://", 1)[0] for u in remote}
    stores = {active().store_for(u) for u in remote}
    if len(protocols) > 1 or len(stores) > 1 or len(remote) != len(urls):
        raise StorageError(
            f"sources come from more than one place ({', '.join(sorted(protocols))}; stores "
            f"{', '.join(sorted(str(s) for s in stores))}): a product reads one store"
        )
    (name,) = stores
    return {"remote_protocol": protocols.pop(), "remote_options": active().options(name) if name else {}}
