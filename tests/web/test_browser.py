"""The web application in a real browser: headless Chromium (Selenium) against a real uvicorn
process, with a real Celery worker doing the work (the model is the demo's replay script) and a
local server speaking GitHub's API. A user logs in, creates a project, launches an idea, approves
the plan on the spec page, and watches the board's cards reach DONE and the pull request link
appear, without reloading, while the server is restarted under the page (the event stream
resumes where it dropped). A screenshot of the board is written to var/screenshots/."""

import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sandboxes.models import AgentRun, QueuedMessage, SandboxEvent
from sandboxes.services.events import event_record
from specs.models import Spec
from tests.e2e.conftest import make_sample_repository
from tests.steering.test_messages import GUIDANCE, step_until
from tests.support.steps import drain
from tests.web.transcripts import run_with_transcript, transcript_append
from tickets.models import Project, Task, Ticket

IDEA = "Add word statistics to textkit: count the words in a text and list its most frequent words."
SCRIPT = Path(settings.BASE_DIR) / "samples" / "textkit.replay.json"
SCREENSHOTS = Path(settings.DATA_DIR) / "screenshots"


def _fill(driver, name: str, value: str) -> None:
    field = driver.find_element(By.NAME, name)
    field.clear()
    field.send_keys(value)


def _text(driver, selector: str) -> str | None:
    """An element's text, read in one script: parts of the page are re-rendered under the test."""
    return driver.execute_script(
        "const found = document.querySelector(arguments[0]); return found ? found.innerText.trim() : null", selector
    )


def _click(driver, element_id: str) -> None:
    """Click a button that a live refresh may have just replaced: find it again and retry."""
    for _ in range(10):
        try:
            driver.find_element(By.ID, element_id).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.2)
    raise AssertionError(f"#{element_id} kept being replaced")


def _cards(driver, column: str) -> list[str]:
    """The ids of a column's cards, read in one script (the board is re-rendered under the test)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(card => card.id)",
        f'#board [data-column="{column}"] .card',
    )


def _log_in(driver, server, username: str = "carol") -> None:
    # The server checks passwords with the default hashers (the suite's MD5 is this process's only).
    get_user_model().objects.create(
        username=username, password=make_password("carol-password-1", hasher=PBKDF2PasswordHasher())
    )
    driver.get(f"{server.url}/")
    assert driver.current_url == f"{server.url}/login/?next=/"
    _fill(driver, "username", username)
    _fill(driver, "password", "carol-password-1")
    driver.find_element(By.CSS_SELECTOR, "form.form button[type=submit]").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "project-form"))


@pytest.mark.worker
def test_launch_approve_and_watch_the_board_live(
    chromium, asgi_server, start_worker, fake_github, execution_env, tmp_path
):
    repository = make_sample_repository(tmp_path / "textkit")
    fake_github.git.seed("acme/textkit", repository)  # GitHub has the repository and its main
    environment = {
        **execution_env,
        "OMOI_REPLAY_SCRIPT": str(SCRIPT),
        "GITHUB_API_URL": fake_github.url,
        # Where the repository policy lets a project name a local repository (the sample's folder).
        "OMOI_LOCAL_REPOSITORY_ROOTS": str(tmp_path),
    }
    worker = start_worker(env=environment)
    server = asgi_server(env=environment)
    driver = chromium
    wait = WebDriverWait(driver, 30, poll_frequency=0.2)
    _log_in(driver, server)

    # Create a project on the sample repository.
    _fill(driver, "name", "textkit")
    _fill(driver, "repository", str(repository))
    _fill(driver, "github_repo", "acme/textkit")
    driver.find_element(By.CSS_SELECTOR, "#project-form button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.ID, "launch-form"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "textkit"

    # Launch the idea; it waits for approval.
    _fill(driver, "idea", IDEA)
    assert driver.find_element(By.NAME, "require_approval").is_selected()
    driver.find_element(By.CSS_SELECTOR, "#launch-form button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.ID, "spec-status"))
    spec = Spec.objects.get(project__name="textkit")
    assert driver.current_url == f"{server.url}/specs/{spec.pk}/"

    # Planning happens while the page is open: the Approve button appears without a reload.
    driver.execute_script("window.omoiMarker = 'planning page';")
    WebDriverWait(driver, 120, poll_frequency=0.3).until(
        lambda d: d.find_elements(By.ID, "control-approve"), message=f"no Approve button\n{worker.log()}"
    )
    assert driver.execute_script("return window.omoiMarker") == "planning page"
    assert _text(driver, "#spec-status") == "Planning complete"
    assert "REQ-001" in _text(driver, "#requirements")
    assert _cards(driver, "BACKLOG") == []

    # Approve on the spec page (a form post through the planning service); then no more reloads.
    _click(driver, "control-approve")
    wait.until(lambda d: "Approved: its tasks become tickets." in (_text(d, ".flash") or ""))
    driver.execute_script("window.omoiMarker = 'approved page';")
    first_after = driver.execute_script("return window.omoiStreams[0].start")

    # The cards appear and move; once one is past REQUIREMENTS, the server restarts under the page.
    WebDriverWait(driver, 120, poll_frequency=0.3).until(
        lambda d: _cards(d, "IMPLEMENTATION") or _cards(d, "TESTING") or _cards(d, "DEPLOYMENT") or _cards(d, "DONE"),
        message=f"no card reached IMPLEMENTATION\n{worker.log()}",
    )
    server.stop()
    server.start()
    WebDriverWait(driver, 30, poll_frequency=0.3).until(
        lambda d: d.execute_script("return window.omoiStreams[0].opened") >= 2,
        message="the stream did not reconnect after the server restarted",
    )

    # Every card reaches DONE and the pull request link appears, on the same page.
    WebDriverWait(driver, 240, poll_frequency=0.5).until(
        lambda d: len(_cards(d, "DONE")) == 2 and d.find_elements(By.ID, "pull-request"),
        message=f"the board did not finish\n{worker.log()}\n{server.log()}",
    )
    assert driver.execute_script("return window.omoiMarker") == "approved page"
    href = driver.execute_script("return document.getElementById('pull-request').href")
    assert href == fake_github.pulls[0]["html_url"]
    spec.refresh_from_db()
    assert fake_github.branch_exists("acme/textkit", spec.branch_name)
    assert _text(driver, "#spec-status") == "Completed"
    for column in ("BACKLOG", "REQUIREMENTS", "DESIGN", "IMPLEMENTATION", "TESTING", "DEPLOYMENT", "BLOCKED"):
        assert _cards(driver, column) == [], column
    counts = driver.execute_script(
        "return Array.from(document.querySelectorAll('#board [data-column]'))"
        ".map(c => [c.dataset.column, c.querySelector('.count').textContent])"
    )
    assert dict(counts)["DONE"] == "2"
    # Each planned task's status followed its ticket to the end, on the same page.
    WebDriverWait(driver, 30, poll_frequency=0.3).until(
        lambda d: (
            [_text(d, f"#task-{key} td:nth-child(2)") for key in ("TSK-001", "TSK-002")] == ["Completed", "Completed"]
        ),
        message="the tasks' status did not follow their tickets",
    )

    # The stream delivered each event once, in order, across the restart: exactly the spec's events
    # of the types the page listens to, from where the page started up to the last one received.
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return window.omoiStreams[0].ended"))
    received = driver.execute_script("return window.omoiStreams[0].received")
    types = driver.execute_script("return window.OmoiStream.TYPES")
    expected = list(
        SandboxEvent.objects.filter(spec=spec, sequence__gt=first_after, sequence__lte=max(received), type__in=types)
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert received == expected
    assert "spec.pull_request_opened" in set(
        SandboxEvent.objects.filter(spec=spec, sequence__in=received).values_list("type", flat=True)
    )

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    board = driver.find_element(By.ID, "spec-board")
    driver.execute_script("arguments[0].scrollIntoView();", board)
    board.screenshot(str(SCREENSHOTS / "board.png"))
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1600, min(height + 200, 8000))
    driver.get_screenshot_as_file(str(SCREENSHOTS / "spec.png"))
    assert (SCREENSHOTS / "board.png").stat().st_size > 10_000


def test_a_running_agent_s_transcript_and_the_project_board_follow_events(chromium, asgi_server, tmp_path):
    """Without a worker, the test writes what a worker would (rows, then their events) and the
    open pages follow: the run page's transcript and verifications, the project board's card."""
    server = asgi_server()
    driver = chromium
    _log_in(driver, server)
    carol = get_user_model().objects.get(username="carol")
    project = Project.objects.create(owner=carol, name="textkit", repository="/tmp/textkit")
    spec = Spec.objects.create(project=project, user=carol, title="Stats", idea="stats", status="executing")
    ticket = Ticket.objects.create(project=project, user=carol, spec=spec, title="Word count", phase="IMPLEMENTATION")
    task = Task.objects.create(
        ticket=ticket, phase="IMPLEMENTATION", task_type="implement_feature", title="Implement", status="running"
    )
    run = run_with_transcript(
        kind="task", spec=spec, task=task, phase="IMPLEMENTATION", messages=[{"role": "user", "content": "# Go"}]
    )

    driver.get(f"{server.url}/runs/{run.pk}/")
    driver.execute_script("window.omoiMarker = 'run page';")
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.omoiStreams[0].opened") >= 1)
    transcript_append(
        run,
        [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "a.py"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "<b>print(1)</b>"}]},
        ],
    )
    AgentRun.objects.filter(pk=run.pk).update(turns=1)
    common = {"spec_id": spec.pk, "ticket_id": ticket.pk, "task_id": task.pk}
    event_record(type="agent.turn", payload={"run": run.pk, "turn": 1}, **common)
    event_record(type="agent.tool_call", payload={"run": run.pk, "name": "read_file"}, **common)
    event_record(type="task.verified", payload={"task": task.pk, "tests_passed": 3}, **common)

    WebDriverWait(driver, 15, poll_frequency=0.2).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#transcript .message")) == 3
    )
    transcript = _text(driver, "#transcript")
    assert "→ read_file" in transcript and "<b>print(1)</b>" in transcript
    WebDriverWait(driver, 15).until(
        lambda d: "Verified by the host (3 tests passed)" in (_text(d, "#verification-list") or "")
    )
    assert driver.execute_script("return window.omoiMarker") == "run page"

    driver.get(f"{server.url}/projects/{project.pk}/board/")
    driver.execute_script("window.omoiMarker = 'board page';")
    assert _cards(driver, "IMPLEMENTATION") == [f"card-{ticket.pk}"]
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.omoiStreams[0].opened") >= 1)
    Ticket.objects.filter(pk=ticket.pk).update(phase="TESTING")
    event_record(type="ticket.transitioned", payload={"from_phase": "IMPLEMENTATION", "to_phase": "TESTING"}, **common)
    WebDriverWait(driver, 15, poll_frequency=0.2).until(lambda d: _cards(d, "TESTING") == [f"card-{ticket.pk}"])
    assert _cards(driver, "IMPLEMENTATION") == []
    assert driver.execute_script("return window.omoiMarker") == "board page"


def test_a_message_typed_on_a_running_agent_s_page_reaches_it_at_its_next_turn(chromium, asgi_server, steering):
    """The demo's agent runs TSK-001 (its steps in this process, as a worker would run them); on its
    run's page a user types a message: it shows as pending, then, at the agent's next turn and
    without a reload, as delivered, in the transcript where the model saw it; when the run is over
    the box goes away."""
    spec = steering({})
    implement = {
        "task__ticket__spec": spec,
        "task__task_type": "implement_feature",
        "task__ticket__spec_task__key": "TSK-001",
    }
    step_until(lambda: AgentRun.objects.filter(**implement, turns__gte=1).exists())
    run = AgentRun.objects.get(**implement)
    server = asgi_server()
    driver = chromium
    _log_in(driver, server)
    spec.project.members.add(get_user_model().objects.get(username="carol"))

    driver.get(f"{server.url}/runs/{run.pk}/")
    assert driver.find_element(By.ID, "message-form").is_displayed()
    _fill(driver, "text", GUIDANCE)
    driver.find_element(By.ID, "send-message").click()
    WebDriverWait(driver, 15).until(lambda d: "Message queued" in (_text(d, ".flash") or ""))
    message = QueuedMessage.objects.get(task=run.task)
    assert (message.status, message.author) == ("pending", "carol")
    item = f"#queued-message-{message.pk}"
    assert "Pending" in _text(driver, item) and "waits for the agent's next turn" in _text(driver, item)
    driver.execute_script("window.omoiMarker = 'run page';")
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.omoiStreams[0].opened") >= 1)

    step_until(lambda: AgentRun.objects.get(pk=run.pk).turns >= 2)

    WebDriverWait(driver, 15, poll_frequency=0.2).until(lambda d: "Delivered" in (_text(d, item) or ""))
    assert f"delivered to run {run.pk} at turn 2" in _text(driver, item)
    WebDriverWait(driver, 15, poll_frequency=0.2).until(lambda d: GUIDANCE in (_text(d, "#transcript") or ""))
    assert driver.execute_script("return window.omoiMarker") == "run page"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.get_screenshot_as_file(str(SCREENSHOTS / "run.png"))

    drain()  # the agent finishes; the ticket and the spec complete

    WebDriverWait(driver, 15, poll_frequency=0.2).until(
        lambda d: not d.find_element(By.ID, "message-form").is_displayed()
    )
    assert "This run is finished: it takes no more messages." in _text(driver, "#run-steering")
    assert driver.execute_script("return window.omoiMarker") == "run page"
    assert QueuedMessage.objects.get(pk=message.pk).delivered_turn == 2
