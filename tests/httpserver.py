"""A small threaded HTTP server on loopback that serves the files under a directory with
byte-range support, as consumers of published products need (netCDF-C's ``#mode=bytes``,
fsspec's HTTP file system, kerchunk references to byte ranges of the sources).

``GET`` and ``HEAD``; one range per request (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) is
answered ``206 Partial Content`` with ``Content-Range``, an unsatisfiable one ``416``; a
header with several ranges or a malformed one is ignored (the whole file, ``200``), as RFC
9110 allows. Directories and missing files are ``404`` (no listings, no redirects). Every
request is recorded in :attr:`RangeHTTPServer.requests` so tests can check ranged reads.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Request:
    """One request the server answered."""

    method: str
    path: str
    range: str | None
    status: int


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``(first, last)`` byte positions (inclusive) of a single-range ``Range`` header over a
    file of ``size`` bytes; ``None`` when the header is to be ignored (malformed, or several
    ranges); ``"unsatisfiable"`` when no byte of the file is in the range."""
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(size - n, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


class RangeHTTPServer:
    """Serve the files under ``root`` at :attr:`url` (``http://127.0.0.1:<port>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> RangeHTTPServer:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, name="RangeHTTPServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> RangeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what it saw -----------------------------------------------------------------------
    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def seen(self, method: str | None = None, prefix: str = "", ranged: bool | None = None) -> list[Request]:
        """The recorded requests, filtered by method, path prefix and whether they had a Range."""
        with self._lock:
            out = list(self.requests)
        return [
            r
            for r in out
            if (method is None or r.method == method)
            and r.path.startswith(prefix)
            and (ranged is None or (r.range is not None) == ranged)
        ]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- the handler -----------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the requests are recorded instead

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _file(self) -> Path | None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                target = (owner.root / path.lstrip("/")).resolve()
                if target != owner.root and owner.root not in target.parents:
                    return None
                return target if target.is_file() else None

            def _status(self, code: int, length: int = 0, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def _serve(self, body: bool) -> None:
                header = self.headers.get("Range")
                path = urllib.parse.urlsplit(self.path).path
                target = self._file()
                if target is None:
                    message = b"not found\n"
                    self._status(404, len(message), {"Content-Type": "text/plain"})
                    if body:
                        self.wfile.write(message)
                    owner.record(Request(self.command, path, header, 404))
                    return
                size = target.stat().st_size
                wanted = parse_range(header, size) if header else None
                base = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
                if wanted == "unsatisfiable":
                    self._status(416, 0, {**base, "Content-Range": f"bytes */{size}"})
                    owner.record(Request(self.command, path, header, 416))
                    return
                if isinstance(wanted, tuple):
                    first, last = wanted
                    code = 206
                    headers = {**base, "Content-Range": f"bytes {first}-{last}/{size}"}
                else:
                    first, last, code, headers = 0, size - 1, 200, base
                length = last - first + 1
                self._status(code, length, headers)
                owner.record(Request(self.command, path, header, code))
                if not body or length <= 0:
                    return
                with target.open("rb") as f:
                    f.seek(first)
                    left = length
                    while left > 0:
                        data = f.read(min(_CHUNK, left))
                        if not data:
                            break
                        self.wfile.write(data)
                        left -= len(data)

        return Handler
