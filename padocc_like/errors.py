"""The error hierarchy.

Errors are grouped by what a handler does about them, and each carries a
stable machine code (:class:`ErrorKind`) that is recorded in project state.
Codes are append-only: never rename or reuse one.

Library code raises; only the runner boundary (:mod:`padocc_like.runners`)
and the CLI catch, record the code and the message in state, and move on.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Stable codes for failures, as written to state and reports."""

    CONFIG = "config"
    UNKNOWN_PLUGIN = "unknown-plugin"
    SOURCE_NOT_FOUND = "source-not-found"
    SOURCES_CHANGED = "sources-changed"
    NO_SOURCES = "no-sources"
    SOURCE = "source"
    UNSUPPORTED_FORMAT = "unsupported-format"
    CORRUPT_FILE = "corrupt-file"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    NOT_REPRESENTABLE = "not-representable"
    INCONSISTENT_SOURCES = "inconsistent-sources"
    PRODUCT = "product"
    VALIDATION_FAILED = "validation-failed"
    STATE = "state"
    STATE_LOCKED = "state-locked"
    PHASE_ORDER = "phase-order"
    CATALOG = "catalog"
    INTERNAL = "internal"
    STORAGE = "storage"
    STORAGE_ACCESS = "storage-access"
    STORAGE_NOT_FOUND = "storage-not-found"
    STORAGE_UNAVAILABLE = "storage-unavailable"
    CATALOG_PUBLISH = "catalog-publish"
    JOB_SUBMISSION = "job-submission"
    JOB_FAILED = "job-failed"
    JOB_TIMEOUT = "job-timeout"
    JOB_OUT_OF_MEMORY = "job-out-of-memory"
    JOB_CANCELLED = "job-cancelled"
    CLUSTER_UNAVAILABLE = "cluster-unavailable"
    WORKER_CRASHED = "worker-crashed"
    PUBLISH = "publish"
    UNMAPPED_URL = "unmapped-url"
    COPY_VERIFICATION = "copy-verification"
    COPY_CONFLICT = "copy-conflict"
    DISK_FULL = "disk-full"


class PadoccLikeError(Exception):
    """Base of every error this package raises on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The form recorded in project state."""
        return {"kind": str(self.kind), "type": type(self).__name__, "message": self.message}


# --- configuration: the user must fix a file; never retried ----------------
class ConfigError(PadoccLikeError, ValueError):
    """A configuration file or option is invalid."""

    kind = ErrorKind.CONFIG


class UnknownPluginError(ConfigError):
    """A named scanner, writer or check is not installed."""

    kind = ErrorKind.UNKNOWN_PLUGIN


# --- sources: the input set is wrong -----------------------------------------
class SourceError(PadoccLikeError):
    """The input set of a project is unusable."""

    kind = ErrorKind.SOURCE


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A source file named by the configuration or the manifest does not exist."""

    kind = ErrorKind.SOURCE_NOT_FOUND


class NoSourcesError(SourceError):
    """A source pattern matched no files."""

    kind = ErrorKind.NO_SOURCES


class SourcesChangedError(SourceError):
    """Sources differ from the immutable input manifest written by init."""

    kind = ErrorKind.SOURCES_CHANGED


# --- scanning one file --------------------------------------------------------
class ScanError(PadoccLikeError):
    """One file could not be scanned."""

    kind = ErrorKind.CORRUPT_FILE


class UnsupportedFormatError(ScanError):
    """No scanner recognises the file's format."""

    kind = ErrorKind.UNSUPPORTED_FORMAT


class UnsupportedFeatureError(ScanError):
    """The file uses a feature that no reference can express (names file and variable)."""

    kind = ErrorKind.UNSUPPORTED_FEATURE


# --- combining many files into one product -----------------------------------
class AggregationError(PadoccLikeError):
    """The files cannot be combined into one exact product."""

    kind = ErrorKind.INCONSISTENT_SOURCES


class NotRepresentableError(AggregationError):
    """The dataset is consistent, but the chosen product kind cannot represent it exactly."""

    kind = ErrorKind.NOT_REPRESENTABLE


# --- products, validation, state, catalog -------------------------------------
class ProductError(PadoccLikeError):
    """A product could not be written or read."""

    kind = ErrorKind.PRODUCT


class ValidationFailedError(PadoccLikeError):
    """Validation found the product differs from its sources."""

    kind = ErrorKind.VALIDATION_FAILED


class StateError(PadoccLikeError):
    """Project state on disk is unreadable or inconsistent."""

    kind = ErrorKind.STATE


class DiskFullError(PadoccLikeError, OSError):
    """A filesystem is full (or over quota): names the file or directory being written and
    the space left; nothing half-written is kept. An ``OSError`` (``errno`` ``ENOSPC``), so
    handlers of write errors still catch it."""

    kind = ErrorKind.DISK_FULL

    def __init__(self, message: str, errno_: int = 28) -> None:
        super().__init__(message)
        self.errno = errno_


class StateLockedError(StateError):
    """Another process holds the project's lock."""

    kind = ErrorKind.STATE_LOCKED


class PhaseOrderError(StateError):
    """A phase was asked to run before the phases it needs."""

    kind = ErrorKind.PHASE_ORDER


class CatalogError(PadoccLikeError):
    """A STAC item or collection could not be built or is invalid."""

    kind = ErrorKind.CATALOG


# --- publishing: rewriting references and copying products to their store -----
class PublishError(PadoccLikeError):
    """A product could not be rewritten for, or copied to, where consumers read it."""

    kind = ErrorKind.PUBLISH


class UnmappedUrlError(PublishError, ValueError):
    """A product names a source URL that no rule of the URL mapping covers (names URL and rules)."""

    kind = ErrorKind.UNMAPPED_URL


class CopyVerificationError(PublishError):
    """An uploaded object differs from the local file (names object, expected and found)."""

    kind = ErrorKind.COPY_VERIFICATION

    def __init__(self, message: str, *, key: str = "", expected: str = "", found: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.found = found


class CopyConflictError(PublishError):
    """The destination already holds objects that are not this product's (names them)."""

    kind = ErrorKind.COPY_CONFLICT


__all__ = [
    "AggregationError",
    "CatalogError",
    "CatalogPublishError",
    "ClusterUnavailableError",
    "ConfigError",
    "CopyConflictError",
    "CopyVerificationError",
    "DiskFullError",
    "ErrorKind",
    "JobCancelledError",
    "JobError",
    "JobOutOfMemoryError",
    "JobSubmissionError",
    "JobTimeoutError",
    "NoSourcesError",
    "NotRepresentableError",
    "PadoccLikeError",
    "PhaseOrderError",
    "ProductError",
    "PublishError",
    "ScanError",
    "SourceError",
    "SourceNotFoundError",
    "SourcesChangedError",
    "StateError",
    "StateLockedError",
    "StorageAccessError",
    "StorageError",
    "StorageNotFoundError",
    "StorageUnavailableError",
    "UnknownPluginError",
    "UnmappedUrlError",
    "UnsupportedFeatureError",
    "UnsupportedFormatError",
    "ValidationFailedError",
    "WorkerCrashedError",
]


# --- storage: a store (a bucket, a server) refused or failed a request ----------
class StorageError(PadoccLikeError):
    """A named store is misconfigured or a request to it failed."""

    kind = ErrorKind.STORAGE


class StorageAccessError(StorageError, PermissionError):
    """A store refused the credentials (wrong key, missing variable, no permission)."""

    kind = ErrorKind.STORAGE_ACCESS


class StorageNotFoundError(StorageError, FileNotFoundError):
    """A bucket or object does not exist."""

    kind = ErrorKind.STORAGE_NOT_FOUND


class StorageUnavailableError(StorageError, ConnectionError):
    """A store did not answer (server down, network), after a few retries."""

    kind = ErrorKind.STORAGE_UNAVAILABLE


class CatalogPublishError(CatalogError):
    """A STAC API refused or failed a request (authentication, a rejected item, no answer)."""

    kind = ErrorKind.CATALOG_PUBLISH


# --- batch jobs: a scheduler refused a submission or ended a task --------------
class JobError(PadoccLikeError):
    """A batch job of a phase failed, or could not be submitted."""

    kind = ErrorKind.JOB_FAILED


class JobSubmissionError(JobError):
    """The scheduler refused a submission (``sbatch`` failed): nothing was queued."""

    kind = ErrorKind.JOB_SUBMISSION


class JobTimeoutError(JobError):
    """The scheduler stopped a task at its time limit."""

    kind = ErrorKind.JOB_TIMEOUT


class JobOutOfMemoryError(JobError):
    """The scheduler stopped a task at its memory limit."""

    kind = ErrorKind.JOB_OUT_OF_MEMORY


class JobCancelledError(JobError):
    """A task was cancelled (``scancel``, a node failure, the operator)."""

    kind = ErrorKind.JOB_CANCELLED


class WorkerCrashedError(JobError):
    """The process running a phase died without a Python error (a crash in a native library,
    or the system killing it): the project fails, the group run goes on."""

    kind = ErrorKind.WORKER_CRASHED


class ClusterUnavailableError(JobError):
    """A Dask cluster could not be started or reached, or had no worker in time."""

    kind = ErrorKind.CLUSTER_UNAVAILABLE
