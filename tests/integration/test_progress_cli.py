"""Progress from the CLI: rewritten in place on a terminal (a real pseudo-terminal here),
plain timestamped lines when stderr is a file or a pipe, nothing with ``-q``."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminals as on Linux")


def _group(tmp_path, write_group):
    return write_group(
        f"group: g\nwork_dir: {tmp_path}/w\nprofile: serial\n"
        "projects:\n  - {id: p1, sources: {glob: archive/*.nc}}\n  - {id: p2, sources: {glob: archive/*.nc}}\n"
    )


def _run(args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "padocc_like", *args],
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
        **kw,
    )


def test_a_terminal_gets_one_line_rewritten_in_place(tmp_path, archive, write_group):
    archive(n_files=6)
    path = _group(tmp_path, write_group)
    leader, follower = pty.openpty()
    try:
        proc = _run(
            ["run", str(path), "--phases", "init,scan,compute,validate"],
            env={"TERM": "xterm"},
            stderr=follower,
            stdout=subprocess.PIPE,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    assert proc.returncode == 0
    screen = b"".join(chunks).decode()
    assert "\r\x1b[2Kscan p1: " in screen and " files" in screen
    assert re.search(r"\r\x1b\[2K(init|scan|compute|validate): \d/2 projects", screen), screen
    assert "ok   validate p2" in proc.stdout.decode()


def test_a_log_gets_plain_lines_of_long_operations_only(tmp_path, archive, write_group):
    archive(n_files=3)
    path = _group(tmp_path, write_group)
    proc = _run(["run", str(path), "--phases", "init,scan"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "progress" not in proc.stderr and "\x1b" not in proc.stderr  # nothing ran 30 s
    # every operation counts as long with an interval of 0
    forced = _run(
        ["scan", str(path), "--force"],
        env={"PADOCC_LIKE_PROGRESS_INTERVAL": "0"},
        capture_output=True,
        text=True,
    )
    assert forced.returncode == 0
    lines = [x for x in forced.stderr.splitlines() if " progress " in x]
    assert any(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d progress scan p1: 3/3 files.*done in \d+s", x)
        for x in lines
    ), lines
    assert "\x1b" not in forced.stderr
    quiet = _run(
        ["scan", str(path), "--force", "-q"],
        env={"PADOCC_LIKE_PROGRESS_INTERVAL": "0"},
        capture_output=True,
        text=True,
    )
    assert quiet.returncode == 0 and "progress" not in quiet.stderr
