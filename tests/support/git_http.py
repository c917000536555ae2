"""Git's smart HTTP protocol served from a folder of bare repositories by `git http-backend`,
recording every request with its headers: a stand-in for GitHub's git host, or for a server a
user points a project at, to see exactly what reaches it.

`GitHttpBackend.handle(handler)` serves one request of a BaseHTTPRequestHandler, so the fake
GitHub can serve its REST API and git from one address, as github.com does.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class GitHttpBackend:
    def __init__(self, root: Path | None = None, *, push_token: str | None = None, create: bool = False) -> None:
        self._tmp = None
        # GitHub has the repository before anyone pushes: create=True makes any named one exist.
        self.create = create
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="omoi-git-http-")
            root = Path(self._tmp.name)
        self.root = Path(root)
        # When set, a push must carry it as GitHub expects (Basic x-access-token:<token>).
        self.push_token = push_token
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def bare(self, name: str) -> Path:
        """The bare repository `name` ("owner/repo"), created empty on first use."""
        path = self.root / f"{name}.git"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
            subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)
        return path

    def seed(self, name: str, source: Path) -> Path:
        """A bare repository `name` holding every branch of the repository at `source`."""
        path = self.root / f"{name}.git"
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", "--bare", str(source), str(path)], check=True)
        subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)
        return path

    def _authorized_push(self, authorization: str | None) -> bool:
        if self.push_token is None:
            return True
        expected = base64.b64encode(f"x-access-token:{self.push_token}".encode()).decode()
        return authorization == f"Basic {expected}"

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        authorization = handler.headers.get("Authorization")
        with self.lock:
            self.requests.append(
                {"method": method, "path": url.path, "query": url.query, "headers": dict(handler.headers.items())}
            )
        if self.create and ".git/" in url.path:
            self.bare(url.path.split(".git/", 1)[0].strip("/"))
        pushing = "git-receive-pack" in url.path or "service=git-receive-pack" in url.query
        if pushing and not self._authorized_push(authorization):
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="git"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": method,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "omoi-test",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": os.devnull,
        }
        if handler.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = handler.headers["Content-Encoding"]
        if handler.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = handler.headers["Git-Protocol"]
        completed = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        head, _, payload = completed.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = completed.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class GitHttpServer:
    """A git server on 127.0.0.1 that records what it receives (`requests`, with headers)."""

    def __init__(self, root: Path | None = None, *, push_token: str | None = None) -> None:
        self.backend = GitHttpBackend(root, push_token=push_token)
        backend = self.backend

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                backend.handle(self, "GET")

            def do_POST(self) -> None:
                backend.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[dict]:
        return self.backend.requests

    def __enter__(self) -> GitHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.backend.close()
