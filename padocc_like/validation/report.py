"""Validation findings and the report format ``padocc-like/validation-report`` v1.

The format is specified in ``docs/spec-report.md``. A report's verdict is
``pass`` only when it holds no ``error`` finding; ``allowed`` findings list
differences that are expected and explained (for example a time axis
re-encoded in common units), and never hide a data difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ..types import Verdict

REPORT_FORMAT = "padocc-like/validation-report"
REPORT_VERSION = 1


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    ALLOWED = "allowed"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    message: str
    variable: str | None = None
    file: str | None = None
    count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, Severity) else v) for k, v in asdict(self).items() if v is not None
        }


@dataclass
class ValidationReport:
    project: str
    product: dict[str, Any]
    mode: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    started: str = ""
    finished: str = ""
    duration_s: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def verdict(self) -> Verdict:
        return Verdict.FAIL if self.errors else Verdict.PASS

    def to_dict(self) -> dict[str, Any]:
        counts = {str(s): sum(1 for f in self.findings if f.severity is s) for s in Severity}
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "project": self.project,
            "product": self.product,
            "mode": self.mode,
            "verdict": str(self.verdict),
            "summary": {**counts, **self.stats},
            "findings": [f.to_dict() for f in self.findings],
            "started": self.started,
            "finished": self.finished,
            "duration_s": round(self.duration_s, 4),
        }

    def summary_text(self, limit: int = 20) -> str:
        """A short human summary."""
        d = self.to_dict()
        s = d["summary"]
        lines = [
            f"Validation of {self.project} r{self.product.get('revision')} ({self.mode}): "
            f"{d['verdict'].upper()}",
            f"  {s.get('variables', 0)} variables, {s.get('files', 0)} files, "
            f"{s.get('values_compared', 0):,} values compared (raw and decoded) in {self.duration_s:.2f} s",
            f"  {s['error']} errors, {s['warning']} warnings, {s['allowed']} allowed differences",
        ]
        shown = [f for f in self.findings if f.severity is not Severity.INFO][:limit]
        for f in shown:
            where = " ".join(x for x in (f.variable and f"[{f.variable}]", f.file and f"({f.file})") if x)
            lines.append(f"  {f.severity.upper():8} {f.check}: {f.message} {where}".rstrip())
        rest = len([f for f in self.findings if f.severity is not Severity.INFO]) - len(shown)
        if rest > 0:
            lines.append(f"  ... and {rest} more (see the JSON report)")
        return "\n".join(lines)
