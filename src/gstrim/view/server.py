"""The page's HTTP server (standard library): it serves exactly the files it was given, by exact URL path,
and nothing else: no directory listings, no path resolution, so `../` or an absolute path is a 404. It answers
only requests addressed to it by name (the Host header): a page on another site whose domain was re-pointed at
127.0.0.1 (DNS rebinding) sends its own domain and gets a 403, so it cannot read the scenes."""

from __future__ import annotations

import http.server
import ipaddress
import shutil
import socket
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
        if not self.server.addressed_to_me(self.headers.get("Host")):
            self.send_error(403, "unknown Host")
            return
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
        self.host_name = host.lower()  # as given (`--host`), before it resolves to the bound address
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address) -> None:
        """A browser that closes the page mid-download is no error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def addressed_to_me(self, host_header: str | None) -> bool:
        """Whether a request's Host names this server: the address it bound, a loopback name, or, bound to
        every interface, any IP literal or this machine's own name (a rebound domain is none of these)."""
        if not host_header:
            return False
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        name = name.strip("[]").lower()
        bound = str(self.server_address[0]).lower()
        if name in {bound, self.host_name, "localhost", "127.0.0.1", "::1"}:
            return True
        if bound in ("0.0.0.0", "", "::"):
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return name in {socket.gethostname().lower(), socket.getfqdn().lower()}
        return False

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
