"""Shared fixtures and the opt-in flags.

``--realdata`` runs the suite over ``../shared/realdata`` (CI passes it; it
fails there if the data is missing, and skips locally with the reason).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REALDATA = Path(os.environ.get("PADOCC_LIKE_REALDATA", REPO.parent / "shared" / "realdata"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--realdata", action="store_true", help="run the real-data suite (../shared/realdata)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--realdata"):
        if not REALDATA.is_dir() and os.environ.get("CI"):
            raise pytest.UsageError(f"--realdata given in CI but {REALDATA} does not exist")
        return
    skip = pytest.mark.skip(reason="real-data suite: run with --realdata")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the CLI's caches (the group index) out of the user's home during tests."""
    monkeypatch.setenv("PADOCC_LIKE_CACHE_DIR", str(tmp_path_factory.mktemp("cli-cache")))


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real data not found at {REALDATA}")
    return REALDATA


@pytest.fixture
def write_group(tmp_path: Path):
    """Write a group YAML file into ``tmp_path`` and return its path."""

    def _write(body: str, name: str = "group.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return _write


@pytest.fixture
def archive(tmp_path: Path):
    """Make a synthetic CF archive: ``archive(n_files=..., **spec)`` -> list of paths."""
    from padocc_like.demo import ArchiveSpec, make_archive

    def _make(subdir: str = "archive", **kw) -> list[Path]:
        spec = ArchiveSpec(**{"n_files": 4, "nlat": 18, "nlon": 36, **kw})
        return make_archive(tmp_path / subdir, spec)

    return _make


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """One loopback SeaweedFS S3 server for the session (``tests/s3server.py``).

    Skips when the ``weed`` binary is missing, but fails in CI, which must run the s3 tests.
    """
    from s3server import SeaweedServer

    reason = SeaweedServer.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the s3 tests: {reason}")
        pytest.skip(reason)
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, uniquely named (empty) bucket on the session's S3 server."""
    import uuid

    name = f"t-{uuid.uuid4().hex[:20]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def stac_api(tmp_path_factory: pytest.TempPathFactory):
    """One loopback STAC API (stac-fastapi-pgstac over PostgreSQL + PostGIS) for the session
    (``tests/stacapi.py``); ``stac_api.url`` is its base URL, with the Transactions extensions on.

    Skips when PostgreSQL or PostGIS is missing, but fails in CI, which must run the stac_api tests.
    The API's own venv is cached in ``~/.cache/padocc-like`` (first start about 30 s, then a few).
    """
    from stacapi import StacApiServer

    reason = StacApiServer.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the stac_api tests: {reason}")
        pytest.skip(reason)
    server = StacApiServer(tmp_path_factory.mktemp("stac-api"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """One loopback single-node SLURM cluster (munged, slurmctld, slurmd; ``tests/slurmcluster.py``)
    for the session: partition ``debug``, node ``localhost``, no accounting database (the
    job-completion log ``slurm_cluster.jobcomp_log`` records finished jobs). Clients need
    ``slurm_cluster.env()`` (``SLURM_CONF``). Starts in well under a second.

    Skips when slurm-wlm/munge are missing or not root, but fails in CI, which must run the slurm tests.
    """
    from slurmcluster import SlurmCluster

    reason = SlurmCluster.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the slurm tests: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless browser the HTML report tests render the page in (Debian's ``chromium``).

    Skips when it is missing, but fails in CI, which must run the HTML report tests.
    """
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium not found (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the HTML report tests: {reason}")
        pytest.skip(reason)
    return found
