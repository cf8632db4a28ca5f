"""Typed, frozen, validated configuration models.

Three kinds of YAML file feed them:

* a **group** file (:class:`GroupConfig`): the group id, the work directory,
  which pipeline and profile to use, defaults, and the projects (listed one by
  one, or discovered from a directory tree);
* a **pipeline** file in ``pipelines/`` (:class:`PipelineConfig`): the phases,
  the product kind and its options, validation mode and catalog output;
* a **profile** file in ``configs/`` (:class:`ProfileConfig`): how runs
  behave on a site (workers, logging, scanner settings).

Every model rejects unknown keys. Project options resolve by precedence:
pipeline < group ``defaults`` < discover entry ``options`` < the project itself.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..types import Phase, ProductKind, ValidationMode

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
"""Project and group ids: safe in paths, STAC ids and SLURM job names."""


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, use_attribute_docstrings=True
    )


# --- named stores --------------------------------------------------------------
SECRET_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "access_key",
        "secret_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "session_token",
        "client_secret",
    }
)
"""Keys that would put a secret into YAML: rejected with a message saying where secrets go."""


class Credentials(_Model):
    """How a store's credentials are obtained at run time. The YAML names where the secrets
    are (environment variables, a profile, a credentials file), never the secrets."""

    source: Literal["env", "profile", "file", "anonymous"] = "env"
    """``env``: from the environment variables named below; ``profile``: a named profile of
    the standard AWS configuration (``~/.aws/credentials``); ``file``: a credentials file in
    that format at ``path``; ``anonymous``: unsigned requests (public buckets)."""
    access_key_env: str = "AWS_ACCESS_KEY_ID"
    """With ``source: env``: the variable holding the access key id."""
    secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    """With ``source: env``: the variable holding the secret access key."""
    token_env: str | None = None
    """With ``source: env``: the variable holding a session token, if any."""
    profile: str | None = None
    """With ``source: profile`` or ``file``: the profile (section) name (default ``default``)."""
    path: str | None = None
    """With ``source: file``: the credentials file."""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        return _reject_secrets(data, "credentials")

    @model_validator(mode="after")
    def _complete(self) -> Credentials:
        if self.source == "file" and not self.path:
            raise ValueError("credentials: source 'file' needs 'path' (the credentials file)")
        if self.source == "profile" and not self.profile:
            raise ValueError("credentials: source 'profile' needs 'profile' (its name)")
        return self


def _reject_secrets(data: Any, where: str) -> Any:
    if isinstance(data, dict):
        for key in data:
            if str(key).lower() in SECRET_KEYS:
                raise ValueError(
                    f"{where}: {key!r} would put a secret into the configuration; name where it is "
                    "instead (credentials: {source: env, access_key_env: ..., secret_key_env: ...}, "
                    "a profile, or a credentials file)"
                )
    return data


class StoreConfig(_Model):
    """A named place that holds files: a local directory, an S3 bucket (and prefix), or an
    HTTPS location (read only)."""

    protocol: Literal["file", "s3", "https", "http"]
    """How the store is reached: a local or mounted ``file`` system, an ``s3`` object store,
    or ``https``/``http`` (read only)."""
    location: str
    """``file``: a directory; ``s3``: ``bucket`` or ``bucket/prefix`` (``s3://`` optional);
    ``https``/``http``: the base URL."""
    endpoint_url: str | None = None
    """S3 only: the server (JASMIN's object store, a local SeaweedFS); AWS when unset."""
    region: str | None = None
    """S3 only: the region to sign requests for."""
    read_only: bool = False
    """Never written to (``https``/``http`` stores are always read only)."""
    credentials: Credentials | None = None
    """S3 only: how to sign requests (default: the standard AWS environment variables)."""
    verify_tls: bool = True
    """Check the server's TLS certificate (turn off only for a test server you trust)."""
    anonymous_read: bool = False
    """Consumers read this store without credentials (a public bucket): the options written
    into products and STAC items then say ``anon: true``."""
    public_url: str | None = None
    """Where consumers read this store's objects, when not at its own URL (an ``https://``
    gateway of a bucket, or the web server of a directory): the catalog's asset hrefs of
    products published to this store use it."""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        return _reject_secrets(data, "store")

    @model_validator(mode="after")
    def _consistent(self) -> StoreConfig:
        if self.protocol != "s3" and (self.endpoint_url or self.credentials or self.region):
            raise ValueError(
                f"endpoint_url, region and credentials are S3 settings (protocol is {self.protocol!r})"
            )
        if self.protocol in ("https", "http") and not self.location.startswith(f"{self.protocol}://"):
            raise ValueError(f"location of a {self.protocol} store must start with {self.protocol}://")
        if self.protocol == "s3":
            bucket = self.location.removeprefix("s3://").strip("/").split("/", 1)[0]
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
                raise ValueError(f"location {self.location!r}: {bucket!r} is not a valid S3 bucket name")
        return self

    def public_options(self) -> dict[str, Any]:
        """The fsspec options a consumer needs to read this store besides their own
        credentials (the endpoint; ``anon`` for an anonymous store): never a secret."""
        if self.protocol != "s3":
            return {}
        opts: dict[str, Any] = {}
        if self.endpoint_url:
            opts["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        if self.anonymous_read or (self.credentials is not None and self.credentials.source == "anonymous"):
            opts["anon"] = True
        return opts

    @property
    def writable(self) -> bool:
        return not self.read_only and self.protocol not in ("https", "http")

    @property
    def root_url(self) -> str:
        """The store's location as a URL without a trailing slash (a plain path for ``file``)."""
        if self.protocol == "s3":
            return "s3://" + self.location.removeprefix("s3://").strip("/")
        if self.protocol == "file":
            return self.location.removeprefix("file://").rstrip("/") or "/"
        return self.location.rstrip("/")


StoreName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=64)]


class PublishRule(_Model):
    """One rule of the reference mapping applied when products are finalised."""

    from_: str = Field(alias="from")
    """Where sources are read during compute (a path or URL prefix)."""
    to: str
    """Where consumers read them (an ``https://`` or ``s3://`` URL prefix)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )


class PublishConfig(_Model):
    """Where ``finalise`` copies validated products, and how their references are rewritten."""

    store: StoreName
    """The destination store (one of ``stores``)."""
    prefix: str = "{group}/{project}"
    """Key prefix of a project's products within the store (``{group}``, ``{project}``)."""
    references: list[PublishRule] = Field(default_factory=list)
    """Source URL mapping, longest prefix first: no built-in default. Leave empty only when
    the sources are already read at their public location."""
    unmapped: Literal["error", "keep"] = "error"
    """A source URL no rule maps: fail (``error``) or publish it unchanged (``keep``)."""


# --- sources -----------------------------------------------------------------
class Sources(_Model):
    """Where a project's files are: exactly one of ``glob``, ``files`` or ``list_file``.

    Relative paths are relative to the group file's directory, or to the location of
    ``store`` when one is named (a bucket prefix, for an ``s3`` store).
    """

    glob: str | list[str] | None = None
    files: list[str] | None = None
    list_file: str | None = None
    store: StoreName | None = None
    """The named store holding the files (default: the local file system)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Sources:
        given = [k for k in ("glob", "files", "list_file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "sources needs exactly one of 'glob', 'files' or 'list_file'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


# --- options a project can override ---------------------------------------
class AttributeEdits(_Model):
    """Attribute changes applied to the product (``set`` wins over the sources)."""

    set: dict[str, Any] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class Attributes(_Model):
    global_: AttributeEdits = Field(default_factory=AttributeEdits, alias="global")
    variables: dict[str, AttributeEdits] = Field(default_factory=dict)

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )


class Variables(_Model):
    keep: list[str] | None = None
    drop: list[str] = Field(default_factory=list)


class ZarrOptions(_Model):
    """How a ``zarr`` product is written: a real Zarr store copied from the sources."""

    format: Literal[2, 3] = 2
    """Zarr format: 2 with consolidated metadata (``.zmetadata``, what today's consumers such
    as DataPoint read), or 3."""
    codec: Literal["zstd", "blosc", "zlib", "none"] = "zstd"
    """Compressor of every array."""
    level: int | None = Field(None, ge=0, le=22)
    """Compression level (the codec's default when unset)."""
    pattern: Literal["maps", "timeseries", "balanced"] = "maps"
    """How people read the data, which decides the chunk layout: ``maps`` (whole horizontal
    planes, a few time steps), ``timeseries`` (the whole time axis for a small tile) or
    ``balanced``."""
    target_chunk_mb: float = Field(8.0, gt=0)
    """Target size of one uncompressed chunk."""
    chunks: dict[str, int] | None = None
    """Explicit chunk sizes by dimension name (``-1``: the whole dimension); dimensions left
    out are chosen by ``pattern``."""
    store: Literal["directory", "zip"] = "directory"
    """Where the store is written: a directory (``r<N>.zarr``), or one zip file
    (``r<N>.zarr.zip``, entries stored uncompressed: its chunks are compressed already) to
    move or publish as a single object; xarray opens it as ``"zip::" + path``."""
    shard_mb: float | None = Field(None, gt=0)
    """Zarr v3 only (``format: 3``): group chunks into shards of about this size, one storage
    object each (fewer objects on an object store, reads still by chunk)."""
    memory_limit_mb: float = Field(256.0, gt=0)
    """Most array data held at once while copying (the process's fixed overhead comes on
    top): a time-series layout is copied through an intermediate store when whole output
    chunks and the source chunks they need do not fit."""

    @model_validator(mode="after")
    def _shards_need_v3(self) -> ZarrOptions:
        if self.shard_mb is not None and self.format != 3:
            raise ValueError("zarr.shard_mb needs format: 3 (Zarr v2 has no shards)")
        return self


class ProductOptions(_Model):
    """The product to compute and its options."""

    kind: ProductKind | list[ProductKind] = ProductKind.KERCHUNK
    layout: Literal["auto", "json", "parquet"] = "auto"
    parquet_threshold_mb: float = Field(32.0, gt=0)
    """Write Parquet instead of JSON when the JSON would exceed this size (32 MiB is about
    300,000 references: larger JSON files take seconds and gigabytes to open)."""
    record_size: int = Field(100_000, gt=0)
    """Rows per Parquet record file."""
    cfa_uris: Literal["absolute", "relative"] = "absolute"
    """How a ``cfa`` product names its fragments (the source files). ``absolute``: ``file://``
    URIs for local paths, other URLs as they are; the product then opens from any working
    directory, also in cfapyx and cf-python (which resolve relative URIs against the working
    directory, not the aggregation file). ``relative``: paths relative to the product's
    directory, as CF-1.13 resolves them, for an archive moved together with its products
    (read correctly by this package's ``padocc_cfa`` xarray engine)."""
    zarr: ZarrOptions = Field(default_factory=ZarrOptions)
    """Options of a ``zarr`` product."""
    cfa_unique_values: bool = False
    """In a ``cfa`` product, write an aggregated variable whose every fragment holds one
    value (a per-file flag, mask or member number) as CF-1.13 ``unique_values`` instead of
    fragment URIs: read without opening the sources. Off by default: cfapyx cannot read
    ``unique_values`` and cf-python does not mask a missing one (this package's
    ``padocc_cfa`` engine reads them all)."""

    @field_validator("kind")
    @classmethod
    def _kinds(cls, kind: ProductKind | list[ProductKind]) -> ProductKind | list[ProductKind]:
        """A list of kinds: not empty, no duplicates, a writer for each (a single kind is
        checked by compute, as it always was)."""
        if not isinstance(kind, list):
            return kind
        if not kind:
            raise ValueError("kind: the list of product kinds is empty")
        twice = sorted({str(k) for k in kind if kind.count(k) > 1})
        if twice:
            raise ValueError(f"kind: product kind {twice[0]!r} is listed twice")
        from ..writers.base import available_writers

        writers = available_writers()
        missing = [str(k) for k in kind if str(k) not in writers]
        if missing:
            raise ValueError(
                f"kind: no writer for product kind {missing[0]!r}; installed: {', '.join(sorted(writers))}"
            )
        return kind

    @property
    def kinds(self) -> tuple[ProductKind, ...]:
        """The requested product kinds, in order (the first is "the" product of older views)."""
        return tuple(self.kind) if isinstance(self.kind, list) else (self.kind,)


class ScanOptions(_Model):
    sample: Literal["all"] | Annotated[int, Field(gt=0)] = "all"
    """Files to inspect in scan: ``all``, or how many (spread evenly) for large projects."""
    all_files_up_to: int = Field(20000, gt=0)
    """With ``sample: all``, projects up to this many files are scanned fully in scan;
    larger ones scan an even sample of this many (compute always reads every file)."""


class ValidationOptions(_Model):
    mode: ValidationMode = ValidationMode.FULL
    sample_fraction: float = Field(0.1, gt=0, le=1)
    """In ``sampled`` mode: the fraction of each file's steps along the first concatenation
    dimension that is compared (at least one step per file)."""
    allow_attribute_differences: list[str] = Field(default_factory=list)
    """Attribute names (``name`` for global, ``var:name`` per variable) whose difference is allowed."""


class CatalogOptions(_Model):
    enabled: bool = True
    collection_id: str | None = None
    description: str | None = None
    license: str = "other"
    keywords: list[str] = Field(default_factory=list)
    href_base: str | None = None
    """Base URL at which the work directory's products will be served (for asset hrefs);
    without it, hrefs are absolute local paths."""
    extra_properties: dict[str, Any] = Field(default_factory=dict)
    attribute_properties: dict[str, str] = Field(default_factory=dict)
    """Item properties taken from the product's global attributes, property name to attribute
    name (CMIP6 DRS facets: ``{cmip6:source_id: source_id, cmip6:experiment_id:
    experiment_id}``); a project whose product lacks one fails the catalog phase, naming it.
    Facets parsed from paths come from ``discover``'s ``properties``."""


class StacAuth(_Model):
    """How the catalog phase authenticates to a STAC API: the secrets stay in the environment."""

    type: Literal["none", "bearer", "oauth2"] = "none"
    """``none``, a ``bearer`` token, or ``oauth2`` client credentials (exchanged for a token)."""
    token_env: str | None = None
    """``bearer``: the environment variable holding the token."""
    token_url: str | None = None
    """``oauth2``: the token endpoint (client credentials grant)."""
    client_id_env: str | None = None
    """``oauth2``: the environment variable holding the client id."""
    client_secret_env: str | None = None
    """``oauth2``: the environment variable holding the client secret."""
    scope: str | None = None
    """``oauth2``: the scope to ask for, if the server needs one."""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        return _reject_secrets(data, "stac_api.auth")

    @model_validator(mode="after")
    def _complete(self) -> StacAuth:
        if self.type == "bearer" and not self.token_env:
            raise ValueError(
                "stac_api.auth: type 'bearer' needs 'token_env' (the variable holding the token)"
            )
        if self.type == "oauth2" and not (self.token_url and self.client_id_env and self.client_secret_env):
            raise ValueError(
                "stac_api.auth: type 'oauth2' needs 'token_url', 'client_id_env' and 'client_secret_env'"
            )
        return self


class StacApiConfig(_Model):
    """A STAC API with the Transactions extension that the catalog phase publishes to."""

    url: str
    """The API's landing page URL (``https://api.example.org/stac``)."""
    auth: StacAuth = Field(default_factory=StacAuth)
    """How to authenticate (default: no authentication)."""
    bulk_from: int = Field(100, ge=1)
    """Publish a group's items with one bulk upsert per this many items when a catalog run
    covers at least this many projects; fewer are PUT one by one."""

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"stac_api.url must be an http(s) URL, not {url!r}")
        return url


class ProjectOptions(_Model):
    """Everything a project may override. ``None`` means: inherit."""

    concat_dims: list[str] | None = None
    variables: Variables | None = None
    attributes: Attributes | None = None
    product: ProductOptions | None = None
    scan: ScanOptions | None = None
    validation: ValidationOptions | None = None
    catalog_properties: dict[str, Any] | None = None


class ProjectConfig(ProjectOptions):
    id: Annotated[str, Field(pattern=ID_PATTERN, max_length=200)]
    sources: Sources
    description: str | None = None


class DiscoverConfig(_Model):
    """Make one project per directory matched by ``pattern`` under ``root``."""

    root: str
    pattern: str
    """A glob of directories relative to ``root`` (e.g. ``CMIP6/*/*/*/*/*/*/*/*/*``)."""
    files: str = "*.nc"
    """Glob of the files of each project, relative to its directory."""
    id: str = "{path}"
    """Project id template: ``{path}`` (relative path, ``/`` → ``.``), ``{name}`` (last
    directory), ``{0}``, ``{1}``... (path components)."""
    properties: dict[str, str] = Field(default_factory=dict)
    """Extra STAC item properties per project, as templates like ``id`` (e.g. CMIP6 DRS facets:
    ``{cmip6:source_id: "{2}", cmip6:experiment_id: "{3}"}``)."""
    options: ProjectOptions = Field(default_factory=ProjectOptions)


# --- pipeline, profile, group -------------------------------------------------
class PipelineConfig(_Model):
    name: Annotated[str, Field(pattern=ID_PATTERN)]
    description: str = ""
    phases: list[Phase] = Field(default_factory=lambda: list(Phase))
    product: ProductOptions = Field(default_factory=ProductOptions)
    scan: ScanOptions = Field(default_factory=ScanOptions)
    validation: ValidationOptions = Field(default_factory=ValidationOptions)
    catalog: CatalogOptions = Field(default_factory=CatalogOptions)

    @field_validator("phases")
    @classmethod
    def _ordered(cls, phases: list[Phase]) -> list[Phase]:
        order = list(Phase)
        if phases != sorted(set(phases), key=order.index):
            raise ValueError(f"phases must be distinct and in order {[str(p) for p in order]}")
        if Phase.INIT not in phases:
            raise ValueError("phases must include 'init'")
        return phases


class SlurmConfig(_Model):
    """How a site runs phases as SLURM array jobs (one array per phase, one task per project
    or per ``projects_per_task`` projects). Nothing about a site is built in."""

    partition: str | None = None
    """``--partition`` (LOTUS: ``standard``, ``debug``...)."""
    account: str | None = None
    """``--account``."""
    qos: str | None = None
    """``--qos``."""
    extra_directives: list[str] = Field(default_factory=list)
    """More ``#SBATCH`` options, one per item without the prefix (``--constraint=amd``)."""
    setup: list[str] = Field(default_factory=list)
    """Shell lines run before the task (``module load jaspy``, ``source /path/venv/bin/activate``)."""
    python: str | None = None
    """The interpreter that runs tasks (default: the one that submits)."""
    time_min: int = Field(30, ge=1)
    """Time limit of a task when scan has no estimate (minutes)."""
    memory_mb: int = Field(2000, ge=50)
    """Memory of a task when scan has no estimate (MB)."""
    max_time_min: int = Field(24 * 60, ge=1)
    """Retries never ask for more time than this."""
    max_memory_mb: int = Field(64000, ge=50)
    """Retries never ask for more memory than this."""
    escalation: float = Field(2.0, gt=1)
    """A task that timed out (ran out of memory) is retried with this many times the time (memory)."""
    max_attempts: int = Field(3, ge=1)
    """Submissions of one phase of one project, the first included, before ``retry`` stops."""
    projects_per_task: int = Field(1, ge=1)
    """Projects one array task runs, one after the other."""
    max_array_size: int = Field(1000, ge=1)
    """Most tasks in one array (the site's ``MaxArraySize`` minus one); more are split."""
    cpus_per_task: int = Field(1, ge=1)
    """``--cpus-per-task`` (the task's file-level workers)."""
    split_files: int | None = Field(5000, ge=1)
    """A project whose manifest lists more files than this has its files scanned by a *shard*
    array before its scan task (one shard per ``shard_files`` files); ``null``: never split.
    Needs the manifest at submission (init already done)."""
    shard_files: int | None = Field(None, ge=1)
    """Files one shard task scans (default: ``split_files``)."""

    @field_validator("extra_directives", "setup")
    @classmethod
    def _one_line(cls, lines: list[str]) -> list[str]:
        for line in lines:
            if "\n" in line or "\r" in line:
                raise ValueError(f"{line!r}: one line per item (no line breaks)")
        return lines


class DaskConfig(_Model):
    """Where ``--runner dask`` runs the per-file work of projects (scans, validation blocks):
    a local cluster, a running scheduler, or SLURM jobs started through dask-jobqueue (with
    the profile's ``slurm`` settings: partition, account, qos, directives, setup lines)."""

    cluster: Literal["local", "address", "slurm"] = "local"
    """``local``: a ``distributed.LocalCluster`` on this machine; ``address``: connect to the
    scheduler at ``address``; ``slurm``: a dask-jobqueue ``SLURMCluster``."""
    address: str | None = None
    """The scheduler to connect to with ``cluster: address`` (``tcp://host:8786``)."""
    n_workers: int | None = Field(None, ge=1, le=4096)
    """Workers of a local cluster (default: the run's ``workers``), or SLURM jobs to start."""
    threads_per_worker: int = Field(1, ge=1, le=64)
    """Threads of each worker (HDF5 holds a global lock: 1 keeps workers busy)."""
    memory_limit: str | None = None
    """Memory of each worker of a local cluster (``4GiB``; default: shared out)."""
    cores: int = Field(1, ge=1)
    """``cluster: slurm``: cores of each worker job."""
    memory_mb: int = Field(4000, ge=50)
    """``cluster: slurm``: memory of each worker job (MB)."""
    walltime_min: int = Field(60, ge=1)
    """``cluster: slurm``: time limit of each worker job (minutes)."""
    interface: str | None = None
    """``cluster: slurm``: the network interface workers and scheduler talk over (``ib0``)."""
    start_timeout_s: float = Field(300, gt=0)
    """How long to wait for the first worker before the run fails."""

    @model_validator(mode="after")
    def _address_given(self) -> DaskConfig:
        if self.cluster == "address" and not self.address:
            raise ValueError("cluster 'address' needs 'address' (the scheduler, tcp://host:8786)")
        if self.address and self.cluster != "address":
            raise ValueError(f"'address' is only used with cluster 'address', not {self.cluster!r}")
        return self


class ProfileConfig(_Model):
    name: Annotated[str, Field(pattern=ID_PATTERN)] = "default"
    description: str = ""
    stores: dict[StoreName, StoreConfig] = Field(default_factory=dict)
    """The site's named stores (a group file may add to or replace them by name)."""
    stac_api: StacApiConfig | None = None
    """The site's STAC API, where the catalog phase publishes (the group file may set its own)."""
    stac_schema_dir: str | None = None
    """A directory of STAC core and extension JSON schemas: items and collections are validated
    against them offline (relative to the profile file's directory)."""
    slurm: SlurmConfig | None = None
    """How this site runs phases as SLURM array jobs (``--runner slurm``)."""
    dask: DaskConfig | None = None
    """Where ``--runner dask`` runs per-file work (default: a local cluster of ``workers``)."""
    workers: int = Field(1, ge=1, le=512)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    inline_threshold: int = Field(500, ge=0)
    """Chunks smaller than this many bytes are copied into the product."""
    materialize_limit_mb: float = Field(16.0, ge=0)
    """Coordinates and bounds along the concatenation axis up to this size are copied
    into the product (their chunking and time units may then differ between files)."""


class GroupConfig(_Model):
    group: Annotated[str, Field(pattern=ID_PATTERN, max_length=100)]
    description: str = ""
    work_dir: str
    pipeline: str | PipelineConfig = "kerchunk"
    profile: str | ProfileConfig = "local"
    defaults: ProjectOptions = Field(default_factory=ProjectOptions)
    projects: list[ProjectConfig] = Field(default_factory=list)
    discover: list[DiscoverConfig] = Field(default_factory=list)
    stores: dict[StoreName, StoreConfig] = Field(default_factory=dict)
    """Named stores, added to (or replacing by name) the profile's."""
    products_store: StoreName | None = None
    """Where compute writes products (an S3 store, for example): staged in the work directory,
    then uploaded atomically. Default: the work directory only."""
    publish: PublishConfig | None = None
    """What ``finalise`` does with validated products (nothing when unset)."""
    stac_api: StacApiConfig | None = None
    """Where the catalog phase publishes items and the collection (replaces the profile's)."""
    stac_schema_dir: str | None = None
    """STAC JSON schemas for offline validation (replaces the profile's; relative to the group
    file's directory)."""

    @model_validator(mode="after")
    def _unique_ids(self) -> GroupConfig:
        seen: set[str] = set()
        for p in self.projects:
            if p.id in seen:
                raise ValueError(f"project id {p.id!r} appears twice")
            seen.add(p.id)
        if not self.projects and not self.discover:
            raise ValueError("a group needs 'projects' or 'discover' (or both)")
        return self


class ResolvedProject(_Model):
    """A project with every option resolved; this is what init snapshots into state."""

    id: str
    group: str
    sources: Sources
    base_dir: str
    description: str | None = None
    concat_dims: list[str] | None = None
    variables: Variables = Field(default_factory=Variables)
    attributes: Attributes = Field(default_factory=Attributes)
    product: ProductOptions = Field(default_factory=ProductOptions)
    scan: ScanOptions = Field(default_factory=ScanOptions)
    validation: ValidationOptions = Field(default_factory=ValidationOptions)
    catalog: CatalogOptions = Field(default_factory=CatalogOptions)
    catalog_properties: dict[str, Any] = Field(default_factory=dict)
    phases: list[Phase] = Field(default_factory=lambda: list(Phase))
    inline_threshold: int = 500
    materialize_limit_mb: float = 16.0
    stores: dict[str, StoreConfig] = Field(default_factory=dict)
    """The stores this project uses (sources, products, publishing), by name."""
    products_store: str | None = None
    publish: PublishConfig | None = None
    stac_api: StacApiConfig | None = None
    stac_schema_dir: str | None = None
    """Absolute path of the STAC schemas (None: core schemas only, from pystac)."""
