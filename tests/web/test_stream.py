"""GET /api/v1/specs/{id}/stream against a real uvicorn process: Server-Sent Events from the rows
workers commit, resumed without gap or duplicate, ended once the spec is settled, and cheap while
idle (no database connection held by waiting streams)."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.db import connection

from sandboxes.models import SandboxEvent
from sandboxes.services.events import event_record
from specs.models import Spec
from tests.factories import ProjectFactory
from tests.web.sse import frames, open_stream, session_cookie


@pytest.fixture
def cookies(user) -> dict[str, str]:
    return session_cookie(user)


def make_spec(user, *, status="executing", events=0, github_repo="", name="streamed"):
    project = ProjectFactory(owner=user, name=name, github_repo=github_repo)
    spec = Spec.objects.create(project=project, user=user, title="Streamed", idea="stream it", status=status)
    for n in range(events):
        event_record(type="spec.progress", payload={"n": n, "text": "line\nbreak"}, spec_id=spec.pk)
    return spec


def in_thread(function) -> threading.Thread:
    """A thread that writes as a worker would, closing its own database connection at the end."""

    def run():
        try:
            function()
        finally:
            connection.close()

    return threading.Thread(target=run)


def stream_url(server, spec) -> str:
    return f"{server.url}/api/v1/specs/{spec.pk}/stream"


def test_a_client_that_drops_every_five_events_receives_each_event_once_in_order(asgi_server, user, cookies):
    spec = make_spec(user, events=23)
    server = asgi_server()

    @in_thread
    def write_more():
        for n in range(23, 61):
            event_record(type="ticket.transitioned" if n % 2 else "agent.turn", payload={"n": n}, spec_id=spec.pk)
            time.sleep(0.02)
        Spec.objects.filter(pk=spec.pk).update(status="failed", last_error="stopped by the test")
        event_record(type="spec.failed", payload={"error": "stopped by the test"}, spec_id=spec.pk)

    writer = write_more
    received: list[tuple[int, str, dict]] = []
    connections = 0
    ended = None
    last_event_id = None
    with httpx.Client(timeout=30, cookies=cookies) as client:
        writer.start()
        while ended is None and connections < 100:
            connections += 1
            with open_stream(client, stream_url(server, spec), last_event_id=last_event_id) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                taken = 0
                for frame in frames(response.iter_lines()):
                    if frame.event == "end":
                        ended = frame.json
                        break
                    if frame.id is None:
                        continue
                    data = frame.json
                    received.append((int(frame.id), frame.event, data["payload"]))
                    last_event_id = frame.id
                    taken += 1
                    if taken == 5:
                        break  # drop the connection; resume with Last-Event-ID
        writer.join()

    rows = list(SandboxEvent.objects.filter(spec=spec).order_by("sequence").values_list("sequence", "type", "payload"))
    assert len(rows) == 62
    assert received == [(sequence, type_, payload) for sequence, type_, payload in rows]
    assert ended == {"status": "failed", "last_sequence": 62}
    assert connections >= 62 // 5


def test_after_resumes_and_last_event_id_wins_over_it(asgi_server, user, cookies):
    spec = make_spec(user, status="cancelled", events=6)
    server = asgi_server()

    with httpx.Client(timeout=15, cookies=cookies) as client:
        with open_stream(client, stream_url(server, spec), params={"after": 3}) as response:
            by_after = [f for f in frames(response.iter_lines()) if f.comment is None]
        with open_stream(client, stream_url(server, spec), params={"after": 1}, last_event_id="4") as response:
            by_header = [f for f in frames(response.iter_lines()) if f.comment is None]

    assert [(f.id, f.event) for f in by_after] == [
        ("4", "spec.progress"),
        ("5", "spec.progress"),
        ("6", "spec.progress"),
        (None, "end"),
    ]
    first = by_after[0].json
    assert (first["sequence"], first["type"], first["payload"]) == (4, "spec.progress", {"n": 3, "text": "line\nbreak"})
    assert set(first) == {"sequence", "type", "payload", "created_at", "ticket", "task"}
    assert [f.id for f in by_header] == ["5", "6", None]


def held_connections(server) -> int:
    """Database connections the server process holds now (PostgreSQL: every other session on the
    test database; SQLite: the server's open handles on the database file)."""
    database = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
            )
            return cursor.fetchone()[0]
    fds = Path(f"/proc/{server.process.pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == os.path.realpath(database))


def test_the_server_keeps_no_database_connection_once_its_requests_are_answered(asgi_server, user, cookies):
    """Under ASGI each request's database work runs in a thread of its own: a persistent connection
    would stay open per thread, and a burst of requests would exhaust the database's connections."""
    spec = make_spec(user, events=3)
    server = asgi_server()
    url = f"{server.url}/api/v1/specs/{spec.pk}/events"

    with httpx.Client(timeout=30, cookies=cookies, limits=httpx.Limits(max_connections=30)) as client:
        with ThreadPoolExecutor(max_workers=30) as pool:
            answers = list(pool.map(lambda _: client.get(url).status_code, range(90)))

    assert answers == [200] * 90
    deadline = time.monotonic() + 5
    while held_connections(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held_connections(server) == 0


def test_an_idle_stream_gets_keep_alive_comments_and_holds_no_database_connection(asgi_server, user, cookies):
    spec = make_spec(user, events=2)
    server = asgi_server(env={"OMOI_STREAM_KEEPALIVE_S": "0.5"})

    comments, samples = [], []
    responses = []
    with httpx.Client(timeout=15, cookies=cookies) as client:
        streams = [open_stream(client, stream_url(server, spec)) for _ in range(20)]
        try:
            responses = [stream.__enter__() for stream in streams]
            assert {r.status_code for r in responses} == {200}
            lines = responses[0].iter_lines()
            seen = []
            for frame in frames(lines):
                if frame.comment is not None:
                    comments.append(frame.comment)
                    samples.append(held_connections(server))
                else:
                    seen.append(frame.id)
                if len(comments) == 6:
                    break
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)

    assert seen == ["1", "2"]
    assert comments == ["keep-alive"] * 6
    # Twenty streams waiting: at most the poller's connection for the instant of a poll.
    assert max(samples) <= 1, samples


def test_a_completed_spec_s_stream_ends_only_after_its_pull_request_step(asgi_server, user, cookies):
    spec = make_spec(user, status="completed", events=1, github_repo="acme/app")
    server = asgi_server()
    got: list = []

    @in_thread
    def finish_later():
        time.sleep(1.5)
        Spec.objects.filter(pk=spec.pk).update(pull_request_url="https://github.example/acme/app/pull/1")
        event_record(type="spec.pull_request_opened", payload={"number": 1}, spec_id=spec.pk)

    finisher = finish_later
    started = time.monotonic()
    with httpx.Client(timeout=20, cookies=cookies) as client:
        finisher.start()
        with open_stream(client, stream_url(server, spec)) as response:
            got = [(f.id, f.event) for f in frames(response.iter_lines()) if f.comment is None]
    finisher.join()

    assert got == [("1", "spec.progress"), ("2", "spec.pull_request_opened"), (None, "end")]
    assert time.monotonic() - started >= 1.5


def test_refusals_are_json(api, other_api, anonymous_api, user):
    spec = make_spec(user, events=1)

    assert other_api.get(f"/api/v1/specs/{spec.pk}/stream", HTTP_ACCEPT="text/event-stream").status_code == 404
    anonymous = anonymous_api.get(f"/api/v1/specs/{spec.pk}/stream", HTTP_ACCEPT="text/event-stream")
    bad = api.get(f"/api/v1/specs/{spec.pk}/stream", {"after": "-1"}, HTTP_ACCEPT="text/event-stream")
    bad_header = api.get(f"/api/v1/specs/{spec.pk}/stream", HTTP_LAST_EVENT_ID="x", HTTP_ACCEPT="text/event-stream")

    assert (anonymous.status_code, anonymous["Content-Type"]) == (401, "application/json")
    assert (bad.status_code, bad.json()["detail"]) == (400, "after: must be 0 or more")
    assert (bad_header.status_code, bad_header.json()["detail"]) == (
        400,
        "Last-Event-ID: must be a whole number, not 'x'",
    )


def test_which_specs_are_settled(user):
    from specs.selectors import specs_settled

    running = make_spec(user, status="executing", name="a")
    failed = make_spec(user, status="failed", name="b")
    cancelled = make_spec(user, status="cancelled", name="c")
    waiting_for_pr = make_spec(user, status="completed", github_repo="acme/app", name="d")
    with_pr = make_spec(user, status="completed", github_repo="acme/app", name="e")
    Spec.objects.filter(pk=with_pr.pk).update(pull_request_url="https://github.example/acme/app/pull/1")
    pushing = make_spec(user, status="completed", name="f")
    pushed = make_spec(user, status="completed", name="g")
    event_record(type="spec.branch_pushed", payload={}, spec_id=pushed.pk)
    ids = [running.pk, failed.pk, cancelled.pk, waiting_for_pr.pk, with_pr.pk, pushing.pk, pushed.pk, 999999]

    assert specs_settled(ids) == {
        failed.pk: "failed",
        cancelled.pk: "cancelled",
        with_pr.pk: "completed",
        pushed.pk: "completed",
        999999: "deleted",
    }


def test_under_wsgi_the_stream_sends_what_there_is_and_ends(api, user):
    """Token auth, and the body served when the application runs under WSGI (runserver, an
    in-process client): the events there are now, `end` only when the spec is settled."""
    running = make_spec(user, events=3, name="running")
    done = make_spec(user, status="failed", events=2, name="done")

    live = api.get(f"/api/v1/specs/{running.pk}/stream", {"after": 1}, HTTP_ACCEPT="text/event-stream")
    ended = api.get(f"/api/v1/specs/{done.pk}/stream", HTTP_ACCEPT="text/event-stream")

    assert live.status_code == 200 and live["Content-Type"] == "text/event-stream; charset=utf-8"
    body = b"".join(live.streaming_content).decode()
    assert [(f.id, f.event) for f in frames(iter(body.split("\n")))] == [("2", "spec.progress"), ("3", "spec.progress")]
    body = b"".join(ended.streaming_content).decode()
    assert [(f.id, f.event) for f in frames(iter(body.split("\n")))] == [
        ("1", "spec.progress"),
        ("2", "spec.progress"),
        (None, "end"),
    ]
