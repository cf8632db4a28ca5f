"""The HTML report of a group: one self-contained static page an operator can open or publish.

:func:`gather` collects what the page shows from the state on disk (through
:mod:`padocc_like.status` and :func:`padocc_like.api.report`); :func:`render` turns that into
one HTML document with inline CSS and inline PNG images (``data:`` URIs), and nothing loaded
from anywhere else (a Content-Security-Policy forbids it). :func:`write_report` does both.

Plots (matplotlib, the ``report`` extra; without it each plot is replaced by a note):

* per project whose products are all valid, a map of the first step of one data variable with
  two horizontal (latitude/longitude) dimensions, read from the product as validation opens it
  and from the source file that holds that step, side by side;
* per project with a manifest, the coverage of the concatenation axis: one bar per file along
  the axis (read from each source's coordinate variable only), gaps and overlaps in red.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, read_json, utc_now
from .errors import PadoccLikeError
from .state.store import current_products, load_state, project_paths
from .types import PHASE_ORDER

log = logging.getLogger(__name__)

MAX_PIXELS = 360
"""The map's longest side in grid points: larger grids are strided down to it."""
MAX_COVERAGE_FILES = 2000
"""Files whose coordinate the coverage plot reads at most (more: the plot is skipped, with a note)."""
FINDINGS_SHOWN = 20
OPEN_UP_TO = 10
"""Groups of at most this many projects show every project's details open."""
LAT_NAMES = {"lat", "latitude", "nav_lat", "rlat"}
LON_NAMES = {"lon", "longitude", "nav_lon", "rlon"}


@dataclass
class Plot:
    """A rendered image (PNG bytes) or, when it could not be drawn, why not."""

    title: str
    png: bytes | None = None
    note: str = ""


@dataclass
class Coverage:
    """Each file's extent along the concatenation axis, and the gaps and overlaps between them."""

    dim: str
    units: str
    files: list[tuple[str, float, float]] = field(default_factory=list)
    """(file name, first value, end = last value + step), in manifest order."""
    gaps: list[tuple[float, float]] = field(default_factory=list)
    overlaps: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class ProjectView:
    """Everything the page shows of one project."""

    row: dict[str, Any]
    phases: list[dict[str, Any]] = field(default_factory=list)
    n_files: int | None = None
    source_bytes: int | None = None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    coverage: Coverage | None = None
    plots: list[Plot] = field(default_factory=list)


@dataclass
class GroupView:
    group_id: str
    work_dir: str
    created: str
    projects: list[ProjectView]
    plots_note: str = ""


# --- gathering --------------------------------------------------------------------------------


def gather(group: Any, projects: Sequence[Any] | None = None, *, plots: bool = True) -> GroupView:
    """What the page shows, read from the work directory (``api.status`` rows, phase records,
    manifests, validation reports); with ``plots``, the maps and coverage plots too."""
    from . import api

    mpl_note = "" if _have_matplotlib() else "plots need matplotlib (pip install 'padocc-like[report]')"
    views = []
    for row in api.status(group, projects):
        view = _project_view(group, row)
        if plots:
            view.plots = _project_plots(view, group.work_dir, mpl_note)
        views.append(view)
    return GroupView(
        group_id=group.id,
        work_dir=str(group.work_dir),
        created=utc_now(),
        projects=views,
        plots_note=mpl_note,
    )


def _project_view(group: Any, row: dict[str, Any]) -> ProjectView:
    from . import api

    view = ProjectView(row=row)
    paths = project_paths(group.work_dir, row["project"])
    try:
        state = load_state(paths) or {}
    except PadoccLikeError:
        state = {}  # the row already says why (state: failed, kind state)
    for phase in PHASE_ORDER:
        rec = state.get("phases", {}).get(str(phase))
        if rec and rec.get("status") != "pending":
            view.phases.append({"phase": str(phase), **rec})
    try:
        files = read_json(paths.manifest).get("files", [])
        view.n_files, view.source_bytes = len(files), sum(int(f.get("size") or 0) for f in files)
    except (OSError, ValueError):
        pass
    for kind in row.get("products") or {}:
        try:
            view.reports[kind] = api.report(group, row["project"], kind)
        except (PadoccLikeError, OSError, ValueError):
            continue  # not validated yet
    return view


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _project_plots(view: ProjectView, work_dir: Path, mpl_note: str) -> list[Plot]:
    pid = view.row["project"]
    paths = project_paths(work_dir, pid)
    out = []
    products = view.row.get("products") or {}
    if products and all(p.get("status") == "valid" for p in products.values()):
        out.append(_guard(Plot("first step: product beside source"), mpl_note, _map_plot, paths))
    else:
        out.append(Plot("first step: product beside source", note="no valid product: nothing to map"))
    try:
        view.coverage = coverage(paths)
    except Exception as err:  # a plot never fails the page
        log.debug("coverage of %s: %s", pid, err, exc_info=True)
        out.append(Plot("coverage of the concatenation axis", note=f"not available: {err}"))
        return out
    if view.coverage is None:
        out.append(Plot("coverage of the concatenation axis", note="no manifest or no concatenation axis"))
    else:
        out.append(_guard(Plot(f"coverage of {view.coverage.dim}"), mpl_note, _coverage_png, view.coverage))
    return out


def _guard(plot: Plot, mpl_note: str, draw: Any, arg: Any) -> Plot:
    """``plot`` drawn by ``draw(arg)`` (PNG bytes, or a note string when there is nothing to
    draw); a note instead when matplotlib is missing or drawing fails."""
    if mpl_note:
        plot.note = mpl_note
        return plot
    try:
        result = draw(arg)
    except Exception as err:  # a plot never fails the page
        log.debug("plot %s: %s", plot.title, err, exc_info=True)
        plot.note = f"could not be drawn: {type(err).__name__}: {err}"
        return plot
    if isinstance(result, str):
        plot.note = result
    else:
        plot.png = result
    return plot


def _local(url: str) -> str | None:
    if "://" in url and not url.startswith("file://"):
        return None
    return url.removeprefix("file://")


def _concat_dim(paths: Any) -> str | None:
    for source in (paths.scan, paths.config):
        try:
            dims = read_json(source).get("concat_dims") or []
        except (OSError, ValueError):
            continue
        if dims:
            return str(dims[0])
    return None


def coverage(paths: Any) -> Coverage | None:
    """Each manifest file's extent along the first concatenation dimension, read from the
    file's coordinate variable alone (values in the first file's units and calendar when it
    has ``units``), and the gaps and overlaps between consecutive files."""
    import netCDF4
    import numpy as np

    try:
        files = read_json(paths.manifest).get("files", [])
    except (OSError, ValueError):
        return None
    dim = _concat_dim(paths)
    if not files or not dim:
        return None
    if len(files) > MAX_COVERAGE_FILES:
        raise ValueError(f"{len(files)} files (the plot reads at most {MAX_COVERAGE_FILES})")
    local = [_local(f["url"]) for f in files]
    if any(u is None for u in local):
        raise ValueError("remote sources (only local files are read for the plot)")
    cov = Coverage(dim=dim, units="")
    ref: tuple[str, str] | None = None
    extents = []
    for url in local:
        with netCDF4.Dataset(url) as ds:
            var = ds.variables.get(dim)
            if var is None:
                raise ValueError(f"{Path(url).name} has no coordinate variable {dim!r}")
            var.set_auto_maskandscale(False)
            values = np.asarray(var[:], dtype="float64").ravel()
            units = getattr(var, "units", None)
            calendar = getattr(var, "calendar", "standard")
        if units and " since " in units:
            import cftime

            if ref is None:
                ref = (units, calendar)
            elif (units, calendar) != ref:
                values = np.asarray(
                    cftime.date2num(cftime.num2date(values, units, calendar), ref[0], ref[1]), "float64"
                )
        elif units and not cov.units:
            cov.units = str(units)
        extents.append((Path(url).name, values))
    if ref is not None:
        cov.units = ref[0]
    steps = [float(np.median(np.diff(v))) for _, v in extents if v.size > 1]
    step = float(np.median(steps)) if steps else 1.0
    for name, v in extents:
        if v.size:
            cov.files.append((name, float(v.min()), float(v.max()) + step))
    tol = abs(step) * 1e-6
    for (_, _, end), (_, start, next_end) in zip(cov.files, cov.files[1:], strict=False):
        if start > end + tol:
            cov.gaps.append((end, start))
        elif start < end - tol:
            cov.overlaps.append((start, min(end, next_end)))
    return cov


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def _coverage_png(cov: Coverage) -> bytes:
    from matplotlib.figure import Figure

    n = len(cov.files)
    fig = Figure(figsize=(8, min(6.0, 1.2 + 0.25 * n)), layout="constrained")
    ax = fig.add_subplot()
    for i, (_, start, end) in enumerate(cov.files):
        ax.broken_barh([(start, end - start)], (i - 0.4, 0.8), facecolors="#4a7ab5")
    for start, end in cov.gaps:
        ax.axvspan(start, end, color="red", alpha=0.35, lw=0)
    for start, end in cov.overlaps:
        ax.axvspan(start, end, facecolor="none", edgecolor="red", hatch="///", lw=1.5)
    if n <= 30:
        ax.set_yticks(range(n), [name for name, _, _ in cov.files], fontsize=7)
    else:
        ax.set_ylabel("file (manifest order)")
    ax.invert_yaxis()
    ax.set_xlabel(f"{cov.dim}" + (f" ({cov.units})" if cov.units else ""))
    ax.set_title(f"{n} files, {len(cov.gaps)} gap(s), {len(cov.overlaps)} overlap(s)", fontsize=9)
    return _png(fig)


def _horizontal_dims(ds: Any) -> dict[str, tuple[str, str]]:
    """Data variables with a latitude and a longitude dimension: name -> (lat dim, lon dim)."""

    def is_axis(dim: str, names: set[str], standard: str, units: str) -> bool:
        if dim.lower() in names:
            return True
        if dim in ds.variables:
            attrs = ds[dim].attrs
            return attrs.get("standard_name") == standard or attrs.get("units") == units
        return False

    found = {}
    for name, var in ds.data_vars.items():
        lat = [d for d in var.dims if is_axis(str(d), LAT_NAMES, "latitude", "degrees_north")]
        lon = [d for d in var.dims if is_axis(str(d), LON_NAMES, "longitude", "degrees_east")]
        if lat and lon and var.dtype.kind in "fiu":
            found[str(name)] = (str(lat[0]), str(lon[0]))
    return found


def _first_step(ds: Any, name: str, lat: str, lon: str) -> Any:
    """The first index of every dimension but lat/lon, strided to at most MAX_PIXELS a side."""
    var = ds[name]
    sel: dict[str, Any] = {d: 0 for d in var.dims if d not in (lat, lon)}
    for d in (lat, lon):
        sel[d] = slice(None, None, max(1, -(-var.sizes[d] // MAX_PIXELS)))
    return var.isel(sel).transpose(lat, lon).values


def _map_plot(paths: Any) -> bytes | str:
    from .stages.validate import ProductOpener
    from .writers.base import ProductRecord

    state = load_state(paths) or {}
    products = current_products(state)
    if not products:
        return "no current product"
    product = products[0]
    files = read_json(paths.manifest).get("files", [])
    if any(_local(f["url"]) is None for f in files):
        return "remote sources: not mapped (only local files are read for the plot)"
    record = ProductRecord.from_dict({k: product[k] for k in ProductRecord.__dataclass_fields__})
    import xarray as xr

    with ProductOpener(record)(decode_times=False) as ds:
        found = _horizontal_dims(ds)
        if not found:
            return "no data variable with latitude and longitude dimensions: nothing to map"
        name = next(iter(found))  # the product's first such variable
        lat, lon = found[name]
        prod = _first_step(ds, name, lat, lon)
        units = str(ds[name].attrs.get("units", ""))
    first = _first_file(paths, files)
    with xr.open_dataset(first, decode_times=False) as src:
        if name not in src:
            return f"{name!r} is not in the first source file"
        source = _first_step(src, name, lat, lon)
    return _map_png(name, units, prod, source, Path(first).name)


def _first_file(paths: Any, files: list[dict[str, Any]]) -> str:
    """The source file that holds the product's first step (by scan's fragments), else the
    manifest's first file."""
    try:
        for frag in read_json(paths.scan).get("fragments") or []:
            if all(r[0] == 0 for r in frag.get("ranges", {}).values()):
                return _local(frag["url"]) or ""
    except (OSError, ValueError):
        pass
    return _local(files[0]["url"]) or ""


def _map_png(name: str, units: str, prod: Any, source: Any, source_name: str) -> bytes:
    import numpy as np
    from matplotlib.figure import Figure

    both = np.concatenate([np.ravel(prod), np.ravel(source)]).astype("float64")
    both = both[np.isfinite(both)]
    vmin, vmax = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, data, title in ((axes[0], prod, "product"), (axes[1], source, f"source {source_name}")):
        im = ax.imshow(np.asarray(data, dtype="float64"), origin="lower", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_title(f"{name}: {title}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), shrink=0.9, label=units)
    return _png(fig)


# --- rendering --------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#eee}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.done,.pass,.valid{color:#176b1f}.failed,.fail,.invalid,.interrupted,.stale{color:#b00020;font-weight:bold}
.note{color:#666;font-style:italic}
details{margin:.3em 0 .8em}summary{cursor:pointer;font-weight:bold}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.4em}
img{max-width:100%;border:1px solid #ddd}
"""

SCRIPT = """
window.addEventListener('load',function(){var im=document.images,ok=true;
for(var i=0;i<im.length;i++){if(!im[i].complete||im[i].naturalWidth===0){ok=false;}}
document.body.setAttribute('data-images-loaded',ok?'all':'broken');
document.body.setAttribute('data-image-count',String(im.length));});
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    x = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if x < 1000 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{n} B"  # pragma: no cover


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(cell: str) -> str:
    return cell if cell.startswith("<td") else f"<td>{cell}</td>"


def _state(value: Any) -> str:
    return f'<span class="{_e(value)}">{_e(value)}</span>'


def _summary(views: list[ProjectView]) -> str:
    by_state: dict[str, int] = {}
    by_phase: dict[tuple[str, str], int] = {}
    for v in views:
        r = v.row
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
        key = (r["phase"] or "-", r["state"])
        by_phase[key] = by_phase.get(key, 0) + 1
    parts = [
        "<h2>Summary</h2>",
        '<p id="counts">'
        + ", ".join(
            f'<span data-state="{_e(s)}">{_state(s)}: <b>{n}</b></span>' for s, n in sorted(by_state.items())
        )
        + f" (of {len(views)} project(s))</p>",
        _table(
            ["phase", "state", "projects"],
            [[_e(ph), _state(st), f'<td class="num">{n}</td>'] for (ph, st), n in sorted(by_phase.items())],
            "counts",
        ),
    ]
    failures: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in views:
        if v.row["state"] in ("failed", "interrupted", "stale"):
            key = (str(v.row["phase"] or "-"), str(v.row.get("error_kind") or v.row["state"]))
            failures.setdefault(key, []).append(v.row)
    if failures:
        parts.append("<h3>Failures by phase and kind</h3>")
        rows = []
        for (phase, kind), members in sorted(failures.items()):
            items = "".join(f"<li><b>{_e(r['project'])}</b>: {_e(r['reason'])}</li>" for r in members)
            rows.append([_e(phase), _e(kind), f'<td class="num">{len(members)}</td>', f"<ul>{items}</ul>"])
        parts.append(_table(["phase", "error kind", "projects", "reasons"], rows, "failures"))
    return "\n".join(parts)


def _verdicts(view: ProjectView) -> tuple[str, str]:
    """The validation cell (verdict per kind) and the values compared (summed)."""
    if not view.reports:
        return '<span class="note">not validated</span>', "-"
    cells = []
    total = 0
    for kind, rep in view.reports.items():
        summary = rep.get("summary", {})
        total += int(summary.get("values_compared") or 0)
        cells.append(
            f"{_e(kind)}: {_state(rep.get('verdict'))} ({_e(summary.get('error', 0))} error(s), "
            f"{_e(summary.get('warning', 0))} warning(s))"
        )
    return "<br>".join(cells), f"{total:,}"


def _overview(views: list[ProjectView]) -> str:
    rows = []
    for v in views:
        r = v.row
        prods = r.get("products") or {}
        prod_cells = "<br>".join(
            f"{_e(kind)} r{_e(p.get('revision'))} {_state(p.get('status'))} {_e(_size(p.get('size')))}"
            for kind, p in prods.items()
        )
        product_bytes = sum(int(p.get("size") or 0) for p in prods.values()) if prods else None
        verdict, compared = _verdicts(v)
        total = sum(float(ph.get("duration_s") or 0) for ph in v.phases)
        jobs = ", ".join(
            f"{_e(ph)}: {_e(j.get('array_task'))} {_e(j.get('state') or '')}"
            for ph, j in (r.get("jobs") or {}).items()
        )
        rows.append(
            [
                f'<a href="#project-{_e(r["project"])}">{_e(r["project"])}</a>',
                _e(r["phase"] or "-"),
                _state(r["state"]),
                f'<td class="num">{_e(v.n_files if v.n_files is not None else "-")}</td>',
                f'<td class="num">{_e(_size(v.source_bytes))}</td>',
                f'<td class="num">{_e(_size(product_bytes))}</td>',
                prod_cells or "-",
                verdict,
                f'<td class="num values-compared">{_e(compared)}</td>',
                f'<td class="num">{total:.2f} s</td>',
                jobs or "-",
            ]
        )
    headers = ["project", "phase", "state", "files", "source bytes", "product bytes", "products"]
    headers += ["validation", "values compared", "time", "jobs"]
    return "<h2>Projects</h2>\n" + _table(headers, rows, "projects")


def _phase_table(view: ProjectView) -> str:
    rows = []
    for ph in view.phases:
        err = ph.get("error") or {}
        what = f"{err.get('kind')}: {err.get('message')}" if err else ph.get("message", "")
        dur = ph.get("duration_s")
        rows.append(
            [
                _e(ph["phase"]),
                _state(ph.get("status")),
                _e(ph.get("started", "")),
                f'<td class="num">{"-" if dur is None else f"{float(dur):.3f} s"}</td>',
                _e(what),
            ]
        )
    if not rows:
        return '<p class="note">no phase has run</p>'
    return _table(["phase", "status", "started", "duration", "message"], rows, "phases")


def _report_section(kind: str, rep: dict[str, Any]) -> str:
    summary = rep.get("summary", {})
    product = rep.get("product", {})
    parts = [
        f"<h4>validation of {_e(kind)} r{_e(product.get('revision'))}: {_state(rep.get('verdict'))} "
        f"({_e(rep.get('mode'))}, {_e(rep.get('duration_s'))} s)</h4>",
        _table(list(summary), [[f'<td class="num">{_e(v)}</td>' for v in summary.values()]], "summary"),
    ]
    shown = [f for f in rep.get("findings", []) if f.get("severity") in ("error", "warning")][:FINDINGS_SHOWN]
    if shown:
        parts.append(
            _table(
                ["severity", "check", "variable", "file", "message"],
                [
                    [
                        _state(f.get("severity")),
                        _e(f.get("check")),
                        _e(f.get("variable", "")),
                        _e(f.get("file", "")),
                        _e(f.get("message")),
                    ]
                    for f in shown
                ],
                "findings",
            )
        )
    return "\n".join(parts)


def _plot_html(plot: Plot) -> str:
    if plot.png:
        data = base64.b64encode(plot.png).decode("ascii")
        return (
            f'<figure><img alt="{_e(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(plot.title)}</figcaption></figure>"
        )
    return f'<p class="note plot-note">{_e(plot.title)}: {_e(plot.note)}</p>'


def _coverage_text(cov: Coverage | None) -> str:
    if cov is None:
        return ""
    text = f"{len(cov.files)} file(s) along {cov.dim}: {len(cov.gaps)} gap(s), {len(cov.overlaps)} overlap(s)"
    return f'<p class="coverage">{_e(text)}</p>'


def _detail(view: ProjectView, open_: bool) -> str:
    r = view.row
    pid = r["project"]
    parts = [
        f'<details id="project-{_e(pid)}" class="project"{" open" if open_ else ""}><summary>{_e(pid)}: {_state(r["state"])}'
        + (f" at {_e(r['phase'])}" if r["phase"] else "")
        + "</summary>"
    ]
    if r.get("reason"):
        parts.append(f'<pre class="reason">{_e(r["reason"])}</pre>')
    parts.append(_phase_table(view))
    for kind, rep in view.reports.items():
        parts.append(_report_section(kind, rep))
    parts.append(_coverage_text(view.coverage))
    parts.extend(_plot_html(p) for p in view.plots)
    parts.append("</details>")
    return "\n".join(parts)


def render(view: GroupView) -> str:
    """The page: one HTML document, every value from state escaped, nothing external."""
    title = f"padocc-like group {view.group_id}"
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p>work directory <code>{_e(view.work_dir)}</code>; generated {_e(view.created)}</p>",
    ]
    if view.plots_note:
        body.append(f'<p class="note">{_e(view.plots_note)}</p>')
    body.append(_summary(view.projects))
    body.append(_overview(view.projects))
    body.append("<h2>Details</h2>")
    body.extend(_detail(v, len(view.projects) <= OPEN_UP_TO) for v in view.projects)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{_e(title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head>\n"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def default_path(group: Any) -> Path:
    return Path(group.work_dir) / "report" / "index.html"


def write_report(group: Any, out: str | Path | None = None, projects: Sequence[Any] | None = None) -> Path:
    """Gather, render and write the page atomically to ``out`` (default
    ``<work_dir>/report/index.html``); returns its path."""
    target = Path(out) if out is not None else default_path(group)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, render(gather(group, projects)))
    target.chmod(0o644)  # a page to publish (it holds what `status` shows, never a credential)
    return target
