"""The documentation site builds cleanly and its examples run.

* ``mkdocs build --strict`` (``mkdocs.yml``) fails on any warning: a broken link or anchor,
  a page left out of the nav.
* The tutorial (``docs/tutorial.md``) is executed as a new user would follow it, in a fresh
  directory, with ``padocc-like`` and ``python`` from this environment first on ``PATH``:
  every ```` ```sh ```` and ```` ```python ```` block in order, each expected to exit 0.
  An HTML comment on the line before a block changes that:

  * ``<!-- test: skip REASON -->``: not run (installation, ``cd``);
  * ``<!-- test: file PATH -->``: the block's text is written to ``PATH`` (a file the reader
    is told to save), not run;
  * ``<!-- test: exit N -->``: the block is run and must exit with status ``N``.

  Other blocks (```` ```text ```` output, ```` ```yaml ```` without a marker) are shown only.
* In the how-to guides and the tutorial, a ```` ```yaml ```` block after
  ``<!-- test: group -->``, ``<!-- test: profile -->`` or ``<!-- test: pipeline -->`` must
  load as that kind of file, and every ``padocc-like ...`` command line in a ```` ```sh ````
  block of any page (and the README) must parse with the CLI's own parser, so no page names
  an option that does not exist; the README's group example must load.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
TUTORIAL = DOCS / "tutorial.md"
HOWTOS = sorted((DOCS / "how-to").glob("*.md"))
BIN = Path(sys.executable).parent

BLOCK = re.compile(
    r"(?:^<!--\s*test:\s*(?P<marker>[^>]*?)\s*-->\s*\n)?^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```\s*$",
    re.M | re.S,
)


@dataclass
class Block:
    page: str
    line: int
    lang: str
    marker: str
    body: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.lang})"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(
            page.relative_to(REPO).as_posix(),
            text.count("\n", 0, m.start("body")),
            m["lang"],
            m["marker"] or "",
            m["body"],
        )
        for m in BLOCK.finditer(text)
    ]


# --- the site builds with no warning --------------------------------------------------------
def test_mkdocs_build_is_strict_clean(tmp_path):
    mkdocs = BIN / "mkdocs"
    if not mkdocs.exists():
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]'")
    proc = subprocess.run(
        [str(mkdocs), "build", "--strict", "--clean", "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0 and not warnings, proc.stderr
    assert (tmp_path / "tutorial.html").exists()
    remote = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    fetching = [p.name for p in tmp_path.rglob("*.html") if remote.search(p.read_text())]
    assert not fetching, f"pages that load scripts, styles or images from the network: {fetching}"
    for page in HOWTOS:
        assert (tmp_path / "how-to" / f"{page.stem}.html").exists(), page


# --- the tutorial runs ----------------------------------------------------------------------
def _cli_has(command: str) -> bool:
    from padocc_like.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return command in sub.choices


@dataclass
class Ran:
    block: Block
    expected: int
    code: int | None  # None: skipped
    output: str
    why: str = ""


@pytest.fixture(scope="module")
def tutorial_run(tmp_path_factory) -> tuple[Path, list[Ran]]:
    """Every block of the tutorial, run in order in one fresh directory."""
    cwd = tmp_path_factory.mktemp("tutorial")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PADOCC_LIKE_CACHE_DIR": str(cwd / ".cache"),
        "TERM": "dumb",
    }
    ran: list[Ran] = []
    for block in blocks(TUTORIAL):
        marker = block.marker
        if marker.startswith("file "):
            target = cwd / marker.removeprefix("file ").strip()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.body)
            continue
        if block.lang not in ("sh", "python") or marker.startswith("skip"):
            continue
        expected = int(marker.removeprefix("exit ")) if marker.startswith("exit ") else 0
        assert marker in ("", f"exit {expected}"), f"{block}: unknown marker {marker!r}"
        if "padocc-like html-report" in block.body and not _cli_has("html-report"):
            ran.append(Ran(block, expected, None, "", "`padocc-like html-report` does not exist yet"))
            continue
        if block.lang == "sh":
            argv = ["bash", "-e", "-o", "pipefail", "-c", block.body]
        else:
            argv = [str(BIN / "python"), "-c", block.body]
        proc = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
        ran.append(Ran(block, expected, proc.returncode, proc.stdout + proc.stderr))
    return cwd, ran


def test_tutorial_blocks_exit_as_the_tutorial_says(tutorial_run):
    _, ran = tutorial_run
    assert len([r for r in ran if r.code is not None]) >= 8, "the tutorial lost its runnable blocks"
    wrong = [
        f"{r.block}: exit {r.code}, the tutorial says {r.expected}\n{r.block.body}\n--- output:\n{r.output}"
        for r in ran
        if r.code is not None and r.code != r.expected
    ]
    assert not wrong, "\n\n".join(wrong)
    assert any(r.expected != 0 for r in ran), "the tutorial's failing run is gone"


def test_tutorial_html_report_block(tutorial_run):
    cwd, ran = tutorial_run
    html = [r for r in ran if "padocc-like html-report" in r.block.body]
    assert html, "the tutorial no longer shows the HTML report"
    for r in html:
        if r.code is None:
            pytest.skip(f"{r.block}: {r.why}")
        assert r.code == r.expected, r.output
    assert (cwd / "report.html").exists()


def test_tutorial_ends_with_a_published_stac_item_that_opens(tutorial_run):
    cwd, _ = tutorial_run
    from padocc_like import api

    items = sorted((cwd / "work" / "projects").glob("*/catalog/item.json"))
    assert len(items) == 2, items
    assert (cwd / "work" / "catalog" / "collection.json").exists()
    for item in items:
        ds = api.open_item(item)
        try:
            assert {"tas", "pr"} <= set(ds.data_vars)
            assert float(ds["tas"].isel(time=0).mean()) > 200
        finally:
            ds.close()
    rows = api.status(api.open_group(cwd / "group.yaml"))
    assert {(r["state"], r["phase"]) for r in rows} == {("done", "catalog")}, rows


# --- how-to guides: YAML loads, command lines parse ---------------------------------------
README = REPO / "README.md"
PAGES = sorted({*DOCS.glob("*.md"), *HOWTOS, README})  # command lines of every page


def test_readme_group_example_loads():
    from padocc_like.config.load import parse_model
    from padocc_like.config.models import GroupConfig

    examples = [b for b in blocks(README) if b.lang == "yaml"]
    assert examples
    for block in examples:
        parse_model(GroupConfig, yaml.safe_load(block.body), str(block))


@pytest.mark.parametrize("page", [TUTORIAL, *HOWTOS], ids=lambda p: p.name)
def test_marked_yaml_blocks_load(page):
    from padocc_like.config.load import parse_model
    from padocc_like.config.models import GroupConfig, PipelineConfig, ProfileConfig

    models = {"group": GroupConfig, "profile": ProfileConfig, "pipeline": PipelineConfig}
    checked = 0
    for block in blocks(page):
        if block.marker in models:
            assert block.lang == "yaml", f"{block}: marker {block.marker!r} on a non-YAML block"
            parse_model(models[block.marker], yaml.safe_load(block.body), str(block))
            checked += 1
        elif block.marker.startswith("file ") and block.marker.endswith((".yaml", ".yml")):
            parse_model(GroupConfig, yaml.safe_load(block.body), str(block))
            checked += 1
    if page in HOWTOS and page.stem in ("own-data", "s3", "slurm", "product-kind"):
        assert checked, f"{page.name}: no YAML example is checked (mark them <!-- test: group -->)"


def _command_lines(block: Block) -> list[str]:
    """``padocc-like ...`` invocations in a shell block (continuations joined, comments cut)."""
    text = block.body.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            part = part.strip()
            if part.startswith("padocc-like "):
                found.append(part)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_command_lines_parse(page):
    from padocc_like.cli import build_parser

    bad = []
    for block in blocks(page):
        if block.lang != "sh":
            continue
        for line in _command_lines(block):
            argv = shlex.split(line, comments=True)[1:]
            if argv and argv[0] == "html-report" and not _cli_has("html-report"):
                continue  # being added; test_tutorial_html_report_block says so
            try:
                build_parser().parse_args(argv)
            except SystemExit as exc:
                if exc.code:
                    bad.append(f"{block}: {line}")
    assert not bad, "command lines the CLI refuses:\n" + "\n".join(bad)
