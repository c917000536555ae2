"""A local HTTP server that answers like the Anthropic Messages API, for the real SDK to talk to."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class FakeMessagesAPI:
    """Answers POST /v1/messages with the queued replies, in order, and records every request."""

    url: str = ""
    replies: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay_s: float = 0.0

    def reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.replies.append((status, body, headers or {}))

    def reply_message(self, content: list[dict[str, Any]], *, stop_reason: str, usage: dict[str, int]) -> None:
        self.reply(
            200,
            {
                "id": f"msg_{len(self.replies)}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-6-20260101",
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            },
        )

    def reply_error(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.reply(status, {"type": "error", "error": {"type": error_type, "message": message}}, headers)


@pytest.fixture
def messages_api():
    api = FakeMessagesAPI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server API)
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            api.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if api.delay_s:
                time.sleep(api.delay_s)
            if api.replies:
                status, reply, headers = api.replies.pop(0)
            else:
                status, reply, headers = (
                    500,
                    {"type": "error", "error": {"type": "api_error", "message": "no reply"}},
                    {},
                )
            data = json.dumps(reply).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield api
    server.shutdown()
    server.server_close()
