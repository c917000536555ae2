"""A local HTTP server that answers like Daytona: its control plane (`/api/sandbox...`) and each
sandbox's toolbox (`/toolbox/<id>/...`), as the official SDK (`daytona`) calls them.

The endpoints and JSON shapes are those of the SDK's generated clients (daytona_api_client's
SandboxApi, daytona_toolbox_api_client's ProcessApi, FileSystemApi, InfoApi) and of the daemon's
handlers; the answers parse into the SDK's models. Each sandbox is a directory on disk: its
home directory is `<root>/<id>/home/daytona`, and that real path is what the sandbox reports as
its home, so commands and file transfers see one consistent file system. Commands run as
subprocesses in that directory with an environment built from scratch (nothing of the process
running the fake), the way the daemon runs them: the command line split on spaces with quotes
grouping, no shell, stdout and stderr combined, the process group killed at the timeout (408).

It keeps Daytona's rules that Omoi relies on: every request needs `Authorization: Bearer <key>`
(401 otherwise), an unknown sandbox is a 404, a create whose name is taken answers 409, a
stopped sandbox's toolbox refuses work, a delete removes the sandbox and its files. Paths
outside a sandbox's directory are refused (403), so the fake never serves the host's files.
Every request is recorded (`requests`, with the time it arrived) so tests can assert what the SDK
sent, and when.

`execute_deadline_s` imitates a proxy in front of the daemon that gives up on long calls: the
call answers 504 after that many seconds while the command keeps running, as it would on
Daytona, so a provider's recovery of partial output can be tested.

From a shell: `python -m tests.support.fake_daytona --root DIR [--port N]` prints the
environment a worker needs (DAYTONA_API_URL, DAYTONA_API_KEY) and serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlparse

DEFAULT_API_KEY = "fake-daytona-api-key"
ORGANIZATION_ID = "org-fake"
DAEMON_SOURCE = "DAYTONA_DAEMON"
BOUNDARY = "DAYTONA-FILE-BOUNDARY"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TERMINATION_GRACE_S = 1.0


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def parse_command(command: str) -> list[str]:
    """The daemon's split of a command line: spaces separate, '…' and "…" group, no escapes."""
    args: list[str] = []
    current: list[str] = []
    quote_char: str | None = None
    for char in command:
        if char in "\"'":
            if quote_char is None:
                quote_char = char
            elif quote_char == char:
                quote_char = None
            else:
                current.append(char)
        elif char == " " and quote_char is None:
            if current:
                args.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        args.append("".join(current))
    return args


@dataclass
class FakeSandbox:
    id: str
    name: str
    directory: Path
    labels: dict[str, str]
    env: dict[str, str]
    snapshot: str | None
    target: str
    auto_stop_interval: int
    auto_delete_interval: int
    network_block_all: bool
    state: str = "started"
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    last_activity_at: str = field(default_factory=_now)
    activity_refreshes: int = 0
    processes: set = field(default_factory=set)

    @property
    def home(self) -> Path:
        return self.directory / "home" / "daytona"


class FakeDaytona:
    def __init__(self, root: Path | str, *, api_key: str = DEFAULT_API_KEY, port: int = 0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.api_key = api_key
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.destroyed: list[FakeSandbox] = []
        self.requests: list[dict] = []
        self.lock = threading.RLock()
        self.execute_deadline_s: float | None = None
        # Tests hold uploads to catch a client mid-transfer (then kill it): clear `uploads_open`,
        # wait for `upload_arrived`.
        self.uploads_open = threading.Event()
        self.uploads_open.set()
        self.upload_arrived = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_PUT(self) -> None:
                fake._handle(self, "PUT")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self.server = _Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_url = f"{self.url}/api"
        self.toolbox_url = f"{self.url}/toolbox"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeDaytona:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for sandbox in self.sandboxes.values():
                self._kill_processes(sandbox)

    def __enter__(self) -> FakeDaytona:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def worker_env(self) -> dict[str, str]:
        """What a worker process needs to use this server through the SDK."""
        return {"OMOI_SANDBOX_PROVIDER": "daytona", "DAYTONA_API_URL": self.api_url, "DAYTONA_API_KEY": self.api_key}

    # --- what tests look at ---------------------------------------------------------------------

    def live(self) -> list[FakeSandbox]:
        with self.lock:
            return list(self.sandboxes.values())

    def requests_to(self, method: str, suffix: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"].endswith(suffix)]

    # --- HTTP plumbing --------------------------------------------------------------------------

    def _read_body(self, handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    handler.rfile.readline()
                    break
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
            return b"".join(chunks)
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        body = self._read_body(handler) if method in ("POST", "PUT") else b""
        record = {
            "time": time.time(),
            "method": method,
            "path": url.path,
            "query": parse_qs(url.query),
            "body": body,
            "headers": dict(handler.headers.items()),
            "authorized": handler.headers.get("Authorization") == f"Bearer {self.api_key}",
        }
        self.requests.append(record)
        try:
            if not url.path.startswith(("/api/", "/toolbox/")) or url.path.startswith("/api/socket.io"):
                # No realtime gateway here: the SDK falls back to polling the control plane.
                status, payload = 404, {"statusCode": 404, "message": "Not Found"}
            elif not record["authorized"]:
                status, payload = 401, {"statusCode": 401, "message": "Unauthorized", "error": "Unauthorized"}
            elif url.path.startswith("/api/"):
                status, payload = self._control_plane(method, url.path[len("/api") :], record["query"], body)
            else:
                status, payload = self._toolbox(method, url.path[len("/toolbox") :], record, handler)
        except _HttpError as exc:
            status, payload = exc.status, exc.payload
        record["status"] = status
        if isinstance(payload, _Raw):
            self._send_raw(handler, status, payload)
        else:
            self._send_json(handler, status, payload)

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, payload) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        if payload is not None:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _send_raw(self, handler: BaseHTTPRequestHandler, status: int, raw: _Raw) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", raw.content_type)
        handler.send_header("Content-Length", str(len(raw.data)))
        handler.end_headers()
        handler.wfile.write(raw.data)

    # --- the control plane ----------------------------------------------------------------------

    def _find(self, id_or_name: str) -> FakeSandbox:
        with self.lock:
            sandbox = self.sandboxes.get(id_or_name) or next(
                (s for s in self.sandboxes.values() if s.name == id_or_name), None
            )
        if sandbox is None:
            raise _HttpError(404, _api_error(404, f"Sandbox with ID or name {id_or_name} not found"))
        return sandbox

    def _dto(self, sandbox: FakeSandbox, *, full: bool = True) -> dict:
        dto = {
            "id": sandbox.id,
            "organizationId": ORGANIZATION_ID,
            "name": sandbox.name,
            "snapshot": sandbox.snapshot,
            "user": "daytona",
            "labels": dict(sandbox.labels),
            "public": False,
            "networkBlockAll": sandbox.network_block_all,
            "target": sandbox.target,
            "cpu": 1,
            "gpu": 0,
            "memory": 1,
            "disk": 3,
            "state": sandbox.state,
            "desiredState": "destroyed" if sandbox.state == "destroyed" else sandbox.state,
            "backupState": "None",
            "autoStopInterval": sandbox.auto_stop_interval,
            "autoArchiveInterval": 10080,
            "autoDeleteInterval": sandbox.auto_delete_interval,
            "createdAt": sandbox.created_at,
            "updatedAt": sandbox.updated_at,
            "lastActivityAt": sandbox.last_activity_at,
            "daemonVersion": "fake",
            "toolboxProxyUrl": self.toolbox_url,
        }
        if full:
            dto.update({"env": dict(sandbox.env), "kvm": False, "volumes": []})
        return dto

    def _control_plane(self, method: str, path: str, query: dict, body: bytes):
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[0] != "sandbox":
            raise _HttpError(404, _api_error(404, "Not Found"))
        if len(parts) == 1 and method == "POST":
            return self._create(_json(body))
        if len(parts) == 1 and method == "GET":
            return 200, self._list(query)
        sandbox = self._find(parts[1])
        action = parts[2:] if len(parts) > 2 else []
        with self.lock:
            if not action and method == "GET":
                return 200, self._dto(sandbox)
            if not action and method == "DELETE":
                self._destroy(sandbox)
                return 200, self._dto(sandbox)
            if action == ["start"] and method == "POST":
                sandbox.state = "started"
            elif action == ["stop"] and method == "POST":
                self._kill_processes(sandbox)
                sandbox.state = "stopped"
            elif action == ["last-activity"] and method == "POST":
                sandbox.last_activity_at = _now()
                sandbox.activity_refreshes += 1
                return 201, None
            elif action == ["toolbox-proxy-url"] and method == "GET":
                return 200, {"url": self.toolbox_url}
            elif action == ["network-settings"] and method == "POST":
                settings = _json(body)
                if "networkBlockAll" in settings:
                    sandbox.network_block_all = bool(settings["networkBlockAll"])
            elif len(action) == 2 and action[0] == "autostop" and method == "POST":
                sandbox.auto_stop_interval = int(action[1])
            elif action == ["labels"] and method == "PUT":
                sandbox.labels = {str(k): str(v) for k, v in _json(body).get("labels", {}).items()}
                sandbox.updated_at = _now()
                return 200, {"labels": dict(sandbox.labels)}
            else:
                raise _HttpError(404, _api_error(404, f"Cannot {method} /sandbox/{'/'.join(parts[1:])}"))
            sandbox.updated_at = _now()
            return 200, self._dto(sandbox)

    def _create(self, request: dict):
        if not isinstance(request, dict):
            raise _HttpError(400, _api_error(400, "the body must be a JSON object"))
        labels = request.get("labels") or {}
        env = request.get("env") or {}
        if not all(isinstance(v, str) for v in [*labels.values(), *env.values()]):
            raise _HttpError(400, _api_error(400, "labels and env values must be strings"))
        sandbox_id = str(uuid.uuid4())
        name = request.get("name") or sandbox_id
        with self.lock:
            if any(s.name == name for s in self.sandboxes.values()):
                raise _HttpError(409, _api_error(409, f"Sandbox with name {name} already exists"))
            sandbox = FakeSandbox(
                id=sandbox_id,
                name=name,
                directory=self.root / sandbox_id,
                labels=dict(labels),
                env=dict(env),
                snapshot=request.get("snapshot") or ("image" if request.get("buildInfo") else "daytona-default"),
                target=request.get("target") or "us",
                auto_stop_interval=int(request.get("autoStopInterval", 15) or 0),
                auto_delete_interval=int(request.get("autoDeleteInterval", -1)),
                network_block_all=bool(request.get("networkBlockAll", False)),
            )
            sandbox.home.mkdir(parents=True)
            self.sandboxes[sandbox_id] = sandbox
            return 200, self._dto(sandbox)

    def _list(self, query: dict) -> dict:
        wanted_labels = json.loads(query["labels"][0]) if "labels" in query else {}
        name_prefix = query.get("name", [""])[0].lower()
        id_prefix = query.get("id", [""])[0].lower()
        states = set(query.get("states", []))
        with self.lock:
            matching = [
                s
                for s in sorted(self.sandboxes.values(), key=lambda s: s.created_at)
                if all(s.labels.get(k) == v for k, v in wanted_labels.items())
                and s.name.lower().startswith(name_prefix)
                and s.id.lower().startswith(id_prefix)
                and (not states or s.state in states)
            ]
        offset = int(query.get("cursor", ["0"])[0])
        limit = int(query.get("limit", ["100"])[0])
        page = matching[offset : offset + limit]
        next_cursor = str(offset + limit) if offset + limit < len(matching) else None
        return {"items": [self._dto(s, full=False) for s in page], "nextCursor": next_cursor}

    def _destroy(self, sandbox: FakeSandbox) -> None:
        self._kill_processes(sandbox)
        sandbox.state = "destroyed"
        sandbox.updated_at = _now()
        self.sandboxes.pop(sandbox.id, None)
        self.destroyed.append(sandbox)
        shutil.rmtree(sandbox.directory, ignore_errors=True)

    def _kill_processes(self, sandbox: FakeSandbox) -> None:
        for process in list(sandbox.processes):
            _terminate_group(process, grace_s=0)
        sandbox.processes.clear()

    # --- the toolbox ----------------------------------------------------------------------------

    def _toolbox(self, method: str, path: str, record: dict, handler: BaseHTTPRequestHandler):
        query, body = record["query"], record["body"]
        sandbox_id, _, rest = path.strip("/").partition("/")
        sandbox = self._find(sandbox_id)
        if sandbox.id != sandbox_id:
            raise _HttpError(404, _api_error(404, f"Sandbox {sandbox_id} not found"))
        if sandbox.state != "started":
            message = f"Sandbox {sandbox.id} is {sandbox.state}, not started"
            raise _HttpError(409, _daemon_error(409, message, "CONFLICT"))
        route = (method, "/" + rest)
        if route in (("GET", "/user-home-dir"), ("GET", "/work-dir")):
            return 200, {"dir": str(sandbox.home)}
        if route == ("GET", "/version"):
            return 200, {"version": "fake"}
        if route == ("POST", "/process/execute"):
            return self._execute(sandbox, _json(body), record)
        if route == ("POST", "/files/bulk-upload"):
            return self._upload(sandbox, handler.headers.get("Content-Type", ""), body)
        if route == ("POST", "/files/bulk-download"):
            return self._download(sandbox, _json(body))
        if route == ("GET", "/files/info"):
            target = self._path(sandbox, query.get("path", [""])[0])
            if not target.exists():
                raise _HttpError(404, _daemon_error(404, f"stat {target}: no such file or directory", "FILE_NOT_FOUND"))
            return 200, _file_info(target)
        if route == ("GET", "/files"):
            target = self._path(sandbox, query.get("path", [""])[0])
            if not target.is_dir():
                raise _HttpError(404, _daemon_error(404, f"{target}: not a directory", "FILE_NOT_FOUND"))
            return 200, [_file_info(child) for child in sorted(target.iterdir())]
        if route == ("DELETE", "/files"):
            target = self._path(sandbox, query.get("path", [""])[0])
            if target.is_dir() and not target.is_symlink():
                if query.get("recursive", ["false"])[0] != "true":
                    raise _HttpError(400, _daemon_error(400, f"{target} is a directory", "BAD_REQUEST"))
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            else:
                raise _HttpError(404, _daemon_error(404, f"{target}: no such file", "FILE_NOT_FOUND"))
            return 204, None
        if route == ("POST", "/files/folder"):
            self._path(sandbox, query.get("path", [""])[0]).mkdir(parents=True, exist_ok=True)
            return 201, None
        raise _HttpError(404, _daemon_error(404, f"no route {method} /{rest}", "NOT_FOUND"))

    def _path(self, sandbox: FakeSandbox, path: str) -> Path:
        """A path as the sandbox's daemon sees it (relative ones from its home), which must stay
        inside the sandbox's directory: the fake never reads or writes the host's own files."""
        if not path or "\x00" in path:
            raise _HttpError(400, _daemon_error(400, "a path is required", "INVALID_FILE_PATH"))
        candidate = Path(path) if path.startswith("/") else sandbox.home / path
        resolved = Path(os.path.realpath(candidate))
        directory = Path(os.path.realpath(sandbox.directory))
        if resolved != directory and directory not in resolved.parents:
            raise _HttpError(403, _daemon_error(403, f"{path}: outside this sandbox", "FILE_ACCESS_DENIED"))
        return resolved

    def _execute(self, sandbox: FakeSandbox, request: dict, http_record: dict):
        command = request.get("command") if isinstance(request, dict) else None
        if not isinstance(command, str) or not command.strip():
            raise _HttpError(400, _daemon_error(400, "command is required", "BAD_REQUEST"))
        argv = parse_command(command)
        cwd = self._path(sandbox, request.get("cwd") or str(sandbox.home))
        env = {
            "PATH": SYSTEM_PATH,
            "HOME": str(sandbox.home),
            "USER": "daytona",
            "LANG": "C.UTF-8",
            "DAYTONA_SANDBOX_ID": sandbox.id,
            "DAYTONA_SANDBOX_USER": "daytona",
        }
        env.update(sandbox.env)
        env.update(request.get("envs") or {})
        timeout = request.get("timeout") or None
        record = {
            "command": command,
            "argv": argv,
            "envs": request.get("envs"),
            "timeout": timeout,
            "network_block_all": sandbox.network_block_all,
        }
        http_record["execute"] = record
        sandbox.last_activity_at = _now()
        try:
            process = subprocess.Popen(
                argv,
                cwd=str(cwd),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        except OSError as exc:
            record["exit_code"] = -1
            return 200, {"exitCode": -1, "result": f"exec: {argv[0]!r}: {exc.strerror}"}
        sandbox.processes.add(process)
        output: list[bytes] = []
        reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
        reader.start()
        deadline = self.execute_deadline_s
        wait_for = min(t for t in (timeout, deadline) if t) if (timeout or deadline) else None
        try:
            process.wait(timeout=wait_for)
        except subprocess.TimeoutExpired:
            if deadline and (not timeout or deadline < timeout):
                # The proxy gives up; the daemon keeps the command running.
                finish = threading.Thread(target=self._finish_later, args=(sandbox, process, timeout, reader))
                finish.daemon = True
                finish.start()
                record["exit_code"] = None
                raise _HttpError(504, {"statusCode": 504, "message": "Gateway Timeout"}) from None
            _terminate_group(process, grace_s=TERMINATION_GRACE_S)
            reader.join(5)
            sandbox.processes.discard(process)
            record["exit_code"] = None
            raise _HttpError(
                408,
                _daemon_error(
                    408,
                    f"Command execution timed out after {timeout} seconds. The timeout can be increased by "
                    "adjusting the timeout parameter in the request.",
                    "PROCESS_EXECUTION_TIMEOUT",
                ),
            ) from None
        reader.join(5)
        sandbox.processes.discard(process)
        record["exit_code"] = process.returncode
        result = b"".join(output).decode("utf-8", errors="replace")
        return 200, {"exitCode": process.returncode, "result": result}

    def _finish_later(self, sandbox: FakeSandbox, process: subprocess.Popen, timeout, reader) -> None:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _terminate_group(process, grace_s=TERMINATION_GRACE_S)
        reader.join(5)
        sandbox.processes.discard(process)

    def _upload(self, sandbox: FakeSandbox, content_type: str, body: bytes):
        self.upload_arrived.set()
        self.uploads_open.wait(60)
        boundary = _boundary(content_type)
        if boundary is None:
            raise _HttpError(400, {"errors": ["invalid multipart form"]})
        destinations: dict[str, str] = {}
        written, errors = [], []
        for headers, data in _multipart_parts(body, boundary):
            name = _disposition_param(headers.get("content-disposition", ""), "name") or ""
            index = name.removeprefix("files[").removesuffix("].path").removesuffix("].file")
            if name.endswith(".path"):
                destinations[index] = data.decode("utf-8").strip()
            elif name.endswith(".file"):
                destination = destinations.get(index)
                if destination is None:
                    errors.append(f"file[{index}]: missing .path metadata")
                    continue
                try:
                    target = self._path(sandbox, destination)
                except _HttpError as exc:
                    errors.append(f"{destination}: {exc.payload['message']}")
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.parent / f".daytona-upload-{uuid.uuid4().hex}"
                partial.write_bytes(data)
                os.replace(partial, target)
                written.append({"path": destination, "bytes": len(data)})
        if errors:
            return 400, {"errors": errors, "files": written}
        return 200, {"files": written}

    def _download(self, sandbox: FakeSandbox, request: dict):
        paths = request.get("paths") if isinstance(request, dict) else None
        if not paths:
            raise _HttpError(400, {"error": 'request body must be {"paths": [ ... ]} and non-empty'})
        chunks = []
        for path in paths:
            try:
                target = self._path(sandbox, path)
                error = None if target.is_file() else (404, f"file not found or invalid: {path}", "FILE_NOT_FOUND")
            except _HttpError as exc:
                error = (exc.status, exc.payload["message"], exc.payload.get("code"))
            if error is None:
                head = _part_head("file", path, "application/octet-stream")
                data = target.read_bytes()
            else:
                head = _part_head("error", path, "application/json")
                status, message, code = error
                data = json.dumps({"message": message, "statusCode": status, "code": code, "source": DAEMON_SOURCE})
                data = data.encode()
            chunks.append(f"--{BOUNDARY}\r\n{head}\r\n".encode() + data + b"\r\n")
        chunks.append(f"--{BOUNDARY}--\r\n".encode())
        return 200, _Raw(b"".join(chunks), f"multipart/form-data; boundary={BOUNDARY}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-answer (a killed worker) is not the server's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _HttpError(Exception):
    def __init__(self, status: int, payload: dict) -> None:
        super().__init__(payload.get("message"))
        self.status = status
        self.payload = payload


@dataclass
class _Raw:
    data: bytes
    content_type: str


def _api_error(status: int, message: str) -> dict:
    return {"statusCode": status, "message": message, "error": _REASONS.get(status, "Error")}


def _daemon_error(status: int, message: str, code: str) -> dict:
    return {"statusCode": status, "message": message, "code": code, "source": DAEMON_SOURCE, "timestamp": _now()}


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}


def _json(body: bytes):
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise _HttpError(400, _api_error(400, "the body is not JSON")) from None


def _file_info(path: Path) -> dict:
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat().replace("+00:00", "Z")
    return {
        "name": path.name,
        "path": str(path),
        "size": stat.st_size,
        "mode": oct(stat.st_mode),
        "modTime": modified,
        "modifiedAt": modified,
        "isDir": path.is_dir(),
        "owner": str(stat.st_uid),
        "group": str(stat.st_gid),
        "permissions": f"{stat.st_mode & 0o7777:04o}",
    }


def _part_head(name: str, path: str, content_type: str) -> str:
    """A bulk-download part's headers: the requested path echoed verbatim (filename*), as the SDK
    matches parts to requests by it."""
    label = path.replace("\\", "\\\\").replace('"', '\\"')
    disposition = f'form-data; name="{name}"; filename="{label}"; filename*=utf-8\'\'{quote(path, safe="")}'
    return f"Content-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n"


def _boundary(content_type: str) -> str | None:
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip('"')
    return None


def _multipart_parts(body: bytes, boundary: str):
    """(headers, data) of each part of a multipart body, the data byte for byte."""
    delimiter = b"--" + boundary.encode()
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        yield headers, data


def _disposition_param(header: str, name: str) -> str | None:
    for param in header.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == name:
            return value.strip('"')
    return None


def _terminate_group(process: subprocess.Popen, *, grace_s: float) -> None:
    """The daemon's TerminateProcessTreeGracefully: SIGTERM to the group, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description="A local server that answers like Daytona's API and toolbox.")
    parser.add_argument("--root", required=True, help="directory holding the sandboxes")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args()
    with FakeDaytona(args.root, api_key=args.api_key, port=args.port) as fake:
        for key, value in fake.worker_env().items():
            print(f"{key}={value}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
