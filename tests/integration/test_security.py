"""Security: ids cannot escape the work directory, YAML is loaded safely, TLS is verified by
default, and planted secrets reach no output of a local run (state, products, reports, logs,
catalog, the CLI's output and the STAC API).

The SLURM script's quoting of hostile strings is tested in tests/unit/test_slurm_render.py;
secrets in an S3 run in tests/integration/test_s3_pipeline.py::test_secrets_never_written.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padocc_like import api, storage
from padocc_like.config.load import load_group
from padocc_like.config.models import ID_PATTERN, StacApiConfig, StoreConfig
from padocc_like.errors import ConfigError
from padocc_like.state.store import SAFE_ID, project_paths

PACKAGE = Path(__file__).resolve().parents[2] / "padocc_like"
SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "stac-schemas"

HOSTILE_IDS = [
    "..",
    ".",
    "../x",
    "../../etc",
    "a/b",
    "a/../../b",
    "/abs",
    "/",
    "a\\b",
    "a\x00b",
    "\x00",
    "a" * 201,
    "x" * 4096,
    "\uff41\uff42",  # fullwidth letters
    "a\u2215b",  # division slash, looks like '/'
    "a\u202eb",  # right-to-left override
    "\u2024\u2024",  # one dot leader twice, looks like '..'
    "é",
    "-rf",
    ".hidden",
    "~root",
    "$(id)",
    "a\nb",
    "",
]

IDS = st.one_of(
    st.sampled_from(HOSTILE_IDS),
    st.text(alphabet=st.sampled_from("a1./\\\x00-_~ \n\u202eé\u2215\uff41$*"), max_size=12),
    st.text(max_size=20),
)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ids")


def group_file(base: Path, group_id: str, project_id: str) -> Path:
    path = base / f"g-{uuid.uuid4().hex[:8]}.yaml"
    body = {
        "group": group_id,
        "work_dir": str(base / "work"),
        "projects": [{"id": project_id, "sources": {"glob": "archive/*.nc"}}],
    }
    path.write_text(yaml.safe_dump(body, allow_unicode=True))
    return path


def inside_work_dir(work: Path, project_id: str) -> bool:
    root = project_paths(work, project_id).root
    resolved = (work / "projects").resolve()
    return root.resolve().parent == resolved and root.name == project_id


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group_id=IDS, project_id=IDS)
def test_ids_never_name_a_path_outside_the_work_directory(base, group_id, project_id):
    """Every group or project id is refused with a message naming the key and the value, or is
    one plain path component inside ``<work_dir>/projects``."""
    path = group_file(base, group_id, project_id)
    try:
        group = load_group(path)
    except ConfigError as err:
        bad = {k: v for k, v in (("group", group_id), ("projects[0].id", project_id)) if not _valid(v)}
        assert bad, f"a valid id was refused: {err.message}"
        named = [k for k in bad if f": {k}:" in err.message]
        assert named, err.message  # the key is named ...
        assert all("should" in line and ", not " in line for line in err.message.splitlines()), err.message
        return
    finally:
        path.unlink()
    assert SAFE_ID.fullmatch(group.id)
    for pid in group.projects:
        assert inside_work_dir(group.work_dir, pid), pid
        assert "\x00" not in pid and "/" not in pid and pid not in (".", "..")


def _valid(value: str) -> bool:
    """Whether ``value`` is an id as given (the models may also accept it with surrounding
    whitespace, which they strip)."""
    return bool(SAFE_ID.fullmatch(value)) and len(value) <= 100


def test_a_refused_id_is_named_in_the_message(base):
    path = group_file(base, "g", "../../etc")
    with pytest.raises(ConfigError) as err:
        load_group(path)
    assert "projects[0].id" in err.value.message and "'../../etc'" in err.value.message
    path = group_file(base, "../g", "p")
    with pytest.raises(ConfigError, match=r"group: .*'\.\./g'"):
        load_group(path)


def test_state_code_refuses_an_id_that_is_not_one_path_component(tmp_path):
    """Defence in depth: ``project_paths`` (under every reader and writer of project files, and
    ``api.project_status``) refuses what the configuration would have refused."""
    assert SAFE_ID.pattern == ID_PATTERN.removeprefix("^").removesuffix("$")
    for bad in HOSTILE_IDS:
        if bad.strip() != bad or (SAFE_ID.fullmatch(bad) and len(bad) <= 200):
            continue
        with pytest.raises(ConfigError, match="not a valid id"):
            project_paths(tmp_path, bad)
    assert project_paths(tmp_path, "ok.id-1_x").root == tmp_path / "projects" / "ok.id-1_x"


def test_subset_names_cannot_name_a_path(tmp_path, archive, write_group):
    archive(n_files=2)
    (tmp_path / "secret.txt").write_text("p\n")
    group = api.open_group(
        write_group(
            f"""
            group: g
            work_dir: {tmp_path / "work"}
            projects:
              - id: p
                sources: {{glob: archive/*.nc}}
            """
        )
    )
    for name in ("../../secret", "../secret", "/etc/passwd", "a/b", "x\x00", "..", "a.b"):
        with pytest.raises(ConfigError, match="subset name"):
            api.select(group, subset=name)
        with pytest.raises(ConfigError, match="subset name"):
            api.save_subset(group, name, [])
    assert not list(tmp_path.glob("**/*.txt.partial"))


# --- YAML ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:subprocess.check_output [['touch', '{marker}']]",
        "!!python/name:os.system",
        "!!python/object:pathlib.Path {{}}",
    ],
)
@pytest.mark.parametrize("where", ["group", "pipeline", "profile"])
def test_yaml_python_tags_are_refused(tmp_path, write_group, tag, where):
    """Configuration files are read with the safe loader: a Python tag is a clear error and
    nothing runs."""
    marker = tmp_path / "pwned"
    value = tag.format(marker=marker)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "configs").mkdir()
    pipeline = f"name: mine\ndescription: {value if where == 'pipeline' else 'x'}\n"
    profile = f"name: mine\ndescription: {value if where == 'profile' else 'x'}\n"
    (tmp_path / "pipelines" / "mine.yaml").write_text(pipeline)
    (tmp_path / "configs" / "mine.yaml").write_text(profile)
    description = value if where == "group" else "x"
    path = write_group(
        f"group: g\nwork_dir: work\npipeline: mine\nprofile: mine\ndescription: {description}\n"
        "projects:\n  - id: p\n    sources: {glob: '*.nc'}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_group(path)
    assert "not valid YAML" in err.value.message and "python/" in err.value.message
    named = {
        "group": path,
        "pipeline": tmp_path / "pipelines" / "mine.yaml",
        "profile": tmp_path / "configs" / "mine.yaml",
    }
    assert str(named[where]) in err.value.message
    assert not marker.exists()


def test_every_yaml_load_in_the_package_is_safe():
    """No ``yaml.load`` without a safe loader, no ``yaml.unsafe_load``/``full_load`` anywhere."""
    unsafe = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                continue
            if node.value.id == "yaml" and node.attr in (
                "unsafe_load",
                "full_load",
                "UnsafeLoader",
                "FullLoader",
                "Loader",
            ):
                unsafe.append(f"{path}:{node.lineno} yaml.{node.attr}")
        for node in ast.walk(ast.parse(text)):
            call = ast.unparse(node) if isinstance(node, ast.Call) else ""
            if call.startswith("yaml.load(") and "SafeLoader" not in call:
                unsafe.append(f"{path}:{node.lineno} {ast.unparse(node)}")
    assert not unsafe, unsafe


# --- TLS -----------------------------------------------------------------------------------
def test_tls_is_verified_unless_a_store_turns_it_off():
    for protocol, location in (("s3", "bucket/x"), ("https", "https://data.example.org/x")):
        extra = {"endpoint_url": "https://s3.example.org"} if protocol == "s3" else {}
        default = StoreConfig(protocol=protocol, location=location, **extra)
        assert default.verify_tls is True
        env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
        opts = storage.Storage({"x": default}, env).options("x")
        text = json.dumps(opts, default=str)
        assert "verify" not in text and "allow_invalid" not in text, opts
        off = StoreConfig(protocol=protocol, location=location, verify_tls=False, **extra)
        opts = storage.Storage({"x": off}, env).options("x")
        assert "false" in json.dumps(opts).lower(), opts  # the explicit opt-out is honoured
    pytest.importorskip("obstore")
    keys = {"key": "k", "secret": "s"}
    for verify, expected in ((None, False), (False, True)):
        extra = {} if verify is None else {"verify_tls": verify}
        config = StoreConfig(protocol="s3", location="bucket", endpoint_url="https://s3.example.org", **extra)
        client, _ = storage._obstore_client("x", config, keys)
        assert bool(client.client_options.get("allow_invalid_certificates")) is expected


def test_every_tls_opt_out_in_the_package_is_guarded_by_verify_tls():
    """The only places that turn certificate checks off are under ``if not store.verify_tls``
    (or its conditional expression); the STAC API client never sets ``verify``."""
    tokens = (
        "verify_ssl",
        '"verify"',
        "verify=False",
        "allow_invalid_certificates",
        "CERT_NONE",
        "check_hostname",
    )
    found = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            code = line.split("#", 1)[0]
            if any(t in code for t in tokens):
                context = " ".join(lines[max(0, i - 1) : i + 1])
                if "verify_tls" not in context:
                    found.append(f"{path.relative_to(PACKAGE)}:{i + 1}: {line.strip()}")
    assert not found, found
    assert StacApiConfig(url="https://stac.example.org").model_dump().get("verify_tls", True) is True


# --- secrets -------------------------------------------------------------------------------
VAULT_STORE = (
    "{protocol: s3, location: vault-bucket/data, endpoint_url: 'https://s3.example.org', credentials: "
    "{source: env, access_key_env: PADOCC_TEST_VAULT_KEY, secret_key_env: PADOCC_TEST_VAULT_SECRET}}"
)
"""An S3 store the projects never use: its credentials are read from the environment."""


@pytest.mark.stac_api
def test_planted_secrets_reach_no_output(tmp_path, archive, stac_api):
    """A local run (every phase, published to a STAC API with a bearer token) with store
    credentials and the token in its environment: no file of the work directory or the CLI's
    cache, no line the CLI prints, and nothing the STAC API holds contains a secret."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"STAC schemas not found at {SCHEMAS}")
    archive(n_files=3)
    secrets = {
        "PADOCC_TEST_STAC_TOKEN": f"stac-token-{uuid.uuid4().hex}",
        "PADOCC_TEST_VAULT_KEY": f"AKIA{uuid.uuid4().hex[:16].upper()}",
        "PADOCC_TEST_VAULT_SECRET": f"vault-secret-{uuid.uuid4().hex}",
        "AWS_SECRET_ACCESS_KEY": f"aws-secret-{uuid.uuid4().hex}",
        "AWS_SESSION_TOKEN": f"aws-session-{uuid.uuid4().hex}",
    }
    collection = f"sec-{uuid.uuid4().hex[:12]}"
    work, pub = tmp_path / "work", tmp_path / "pub"
    group = tmp_path / "group.yaml"
    group.write_text(
        f"""
group: sec
work_dir: {work}
profile: serial
stac_api: {{url: "{stac_api.url}", auth: {{type: bearer, token_env: PADOCC_TEST_STAC_TOKEN}}}}
stac_schema_dir: {SCHEMAS}
stores:
  vault: {VAULT_STORE}
  site: {{protocol: file, location: "{pub}", public_url: "https://data.example.org/products"}}
publish:
  store: site
  references:
    - {{from: "{tmp_path / "archive"}/", to: "https://data.example.org/archive/"}}
pipeline:
  name: sec
  catalog: {{collection_id: {collection}}}
projects:
  - id: p
    sources: {{glob: archive/*.nc}}
    product: {{kind: [kerchunk, cfa, zarr]}}
"""
    )
    cache = tmp_path / "cli-cache"
    env = {**os.environ, **secrets, "PADOCC_LIKE_CACHE_DIR": str(cache)}
    printed = []
    for args in (
        ["-vv", "run", str(group)],
        ["status", str(group)],
        ["status", str(group), "--json"],
        ["report", str(group), "-p", "p"],
        ["report", str(group), "-p", "p", "--json"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "padocc_like", *args], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        printed.append(proc.stdout + proc.stderr)
    state = json.loads((work / "projects" / "p" / "state.json").read_text())
    assert state["phases"]["catalog"]["status"] == "done"
    assert state["catalog_published"]["api"] == stac_api.url

    import requests

    api_texts = [
        requests.get(f"{stac_api.url}/collections/{collection}", timeout=10).text,
        requests.get(f"{stac_api.url}/collections/{collection}/items", timeout=10).text,
    ]
    searched = 0
    for root in (work, pub, cache):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                searched += 1
                for name, secret in secrets.items():
                    assert secret.encode() not in data, f"{name} found in {path}"
    assert searched > 20
    assert any(p.suffix == ".log" for p in work.rglob("*.log"))
    for text in printed + api_texts:
        for name, secret in secrets.items():
            assert secret not in text, f"{name} printed"


def test_slurm_submissions_hold_no_secret(tmp_path, archive, write_group, monkeypatch):
    """The SLURM scripts of a submission name no credential: array tasks inherit the
    submitter's environment, nothing is copied into a script or the work directory. (A real
    submission is run in tests/integration/test_slurm_runner.py.)"""
    archive(n_files=2)
    secret = f"slurm-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("PADOCC_TEST_VAULT_SECRET", secret)
    path = write_group(
        f"""
        group: g
        work_dir: {tmp_path / "work"}
        profile:
          name: site
          slurm: {{partition: debug}}
        stores:
          vault: {VAULT_STORE}
        projects:
          - id: p
            sources: {{glob: archive/*.nc}}
        """
    )
    group = api.open_group(path)
    jobs = api.submit(
        group, ["init", "scan", "compute", "validate"], dry_run=True, env={"PADOCC_TEST_VAULT_SECRET": secret}
    )
    assert len(jobs) == 4 and all("#SBATCH" in job.script for job in jobs)
    for job in jobs:
        assert secret not in job.script and "PADOCC_TEST_VAULT_SECRET" not in job.script
    for p in (tmp_path / "work").rglob("*"):
        assert not p.is_file() or secret.encode() not in p.read_bytes(), p
