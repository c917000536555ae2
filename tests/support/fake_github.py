"""A local HTTP server that answers like GitHub: the REST API's pull request endpoints, and git
over smart HTTP at /<owner>/<name>.git (pushes need the token, as on github.com)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.support.git_http import GitHttpBackend

TOKEN = "test-github-token"


class FakeGitHub:
    def __init__(self, token: str = TOKEN) -> None:
        self.pulls: list[dict] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.git = GitHttpBackend(push_token=token, create=True)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if ".git/" in self.path:
                    return fake.git.handle(self, "GET")
                url = urlparse(self.path)
                fake.requests.append({"method": "GET", "path": url.path, "auth": self.headers.get("Authorization")})
                parts = url.path.strip("/").split("/")
                if len(parts) == 4 and parts[0] == "repos" and parts[3] == "pulls":
                    head = parse_qs(url.query).get("head", [""])[0]
                    branch = head.split(":", 1)[-1]
                    repo = f"{parts[1]}/{parts[2]}"
                    with fake.lock:
                        found = [p for p in fake.pulls if p["repo"] == repo and p["head"]["ref"] == branch]
                    return self._send(200, found)
                self._send(404, {"message": "Not Found"})

            def do_POST(self) -> None:
                if ".git/" in self.path:
                    return fake.git.handle(self, "POST")
                url = urlparse(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append(
                    {"method": "POST", "path": url.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                parts = url.path.strip("/").split("/")
                if self.headers.get("Authorization") != f"Bearer {token}":
                    return self._send(401, {"message": "Bad credentials"})
                if len(parts) == 4 and parts[0] == "repos" and parts[3] == "pulls":
                    repo = f"{parts[1]}/{parts[2]}"
                    with fake.lock:
                        if any(p["repo"] == repo and p["head"]["ref"] == body["head"] for p in fake.pulls):
                            return self._send(422, {"message": "A pull request already exists"})
                        number = len(fake.pulls) + 1
                        pull = {
                            "repo": repo,
                            "number": number,
                            "html_url": f"https://github.example/{repo}/pull/{number}",
                            "title": body["title"],
                            "body": body["body"],
                            "head": {"ref": body["head"]},
                            "base": {"ref": body["base"]},
                            "state": "open",
                        }
                        fake.pulls.append(pull)
                    return self._send(201, pull)
                self._send(404, {"message": "Not Found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeGitHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.git.close()

    def branch_exists(self, repo: str, branch: str) -> bool:
        """Whether a push brought `branch` to the repository `repo` ("owner/name")."""
        import subprocess

        path = self.git.root / f"{repo}.git"
        found = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            capture_output=True,
        )
        return path.exists() and found.returncode == 0
