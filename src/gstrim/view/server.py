"""The page's HTTP server (standard library): it serves exactly the files it was given, by exact URL path,
and nothing else: no directory listings, no path resolution, so `../` or an absolute path is a 404."""

from __future__ import annotations

import http.server
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
                 ".json": "application/json"}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ViewServer

    def do_GET(self):  # noqa: N802 (the standard library's name)
        self._answer(body=True)

    def do_HEAD(self):  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        served = self.server.routes.get(path)
        if served is None:
            self.send_error(404, "not served")
            return
        data = served if isinstance(served, bytes) else None
        self.send_response(200)
        named = Path(path) if data is not None else served  # "/" is index.html
        self.send_header("Content-Type", CONTENT_TYPES.get(named.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(data) if data is not None else served.stat().st_size))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not body:
            return
        if data is not None:
            self.wfile.write(data)
        else:
            with open(served, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)

    def log_message(self, format, *args):  # the terminal shows the page's address, not every request
        pass


class ViewServer(http.server.ThreadingHTTPServer):
    """Serves `routes` (URL path -> file or bytes) on host:port (port 0: a free one) in a daemon thread."""

    daemon_threads = True

    def __init__(self, routes: dict[str, Path | bytes], host: str = "127.0.0.1", port: int = 0):
        self.routes = dict(routes)
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address) -> None:
        """A browser that closes the page mid-download is no error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    def wait(self) -> None:
        """Until the server stops (Ctrl-C in the caller's thread)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> ViewServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
