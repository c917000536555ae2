"""Issue 13 on the web pages: the message box of a planning spec and of a running agent's run (the
same services as the API, idempotent, refusals with the service's reason, pending then delivered),
the spec's budget (the API's figures, a form that sets it through the same service), and the
guardian's steps in words on the spec's timeline and the run's page. Steps run in this process as a
worker would run them (tests/support/steps.py), with the demo's replay model on the sample."""

from __future__ import annotations

import re
from decimal import Decimal
from html import unescape

import pytest
from django.test import Client

from omoi.budgets import budget_reserve, budget_settle
from sandboxes.models import AgentRun, QueuedMessage, SandboxEvent
from specs.models import Spec
from specs.services.planning import planning_accounts, spec_launch
from tests.e2e.conftest import make_sample_repository, planned_spec, sample_script, write_script
from tests.factories import ProjectFactory
from tests.steering.conftest import loop
from tests.support.steps import drain, run_step
from tests.web.transcripts import run_with_transcript
from tickets.models import Phase, Task, Ticket

GUIDANCE = "Look at textkit/core.py before anything else."
IMPLEMENT = "TSK-001:implement_feature"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def flash(response) -> list[str]:
    return [unescape(text) for text in re.findall(r'<li class="flash-\w+">(.*?)</li>', response.content.decode())]


def form_key(html: str) -> str:
    return re.search(r'id="message-form".*?name="idempotency_key" value="([0-9a-f]{32})"', html, re.S).group(1)


def message_item(html: str, message: QueuedMessage) -> str:
    return re.search(rf'<li class="queued-message[^"]*" id="queued-message-{message.pk}">.*?</li>', html, re.S).group(0)


@pytest.fixture
def planning(settings, tmp_path, user):
    """A spec launched on the sample with the demo's replay model, still in EXPLORE (no step ran)."""
    settings.OMOI_REPOS_DIR = tmp_path / "repos"
    settings.OMOI_SANDBOX_ROOT = tmp_path / "sandboxes"
    settings.OMOI_LLM_PROVIDER = "replay"
    settings.OMOI_REPLAY_SCRIPT = write_script(tmp_path, sample_script())
    settings.OMOI_LOCAL_REPOSITORY_ROOTS = [tmp_path]
    repository = make_sample_repository(tmp_path / "textkit")
    project = ProjectFactory(owner=user, name="textkit", repository=str(repository))
    return spec_launch(project_id=project.pk, user=user, idea="Add word statistics to textkit", require_approval=True)


@pytest.mark.django_db(transaction=True)
def test_a_planning_spec_takes_a_message_from_its_page_and_shows_it_pending_then_delivered(planning, user, api):
    browser = logged_in(user)
    page = browser.get(f"/specs/{planning.pk}/").content.decode()
    assert re.search(
        r'<form method="post" action="/specs/\d+/message" class="form message-form" id="message-form">', page
    )
    key = form_key(page)

    sent = browser.post(f"/specs/{planning.pk}/message", {"text": GUIDANCE, "idempotency_key": key}, follow=True)
    again = browser.post(f"/specs/{planning.pk}/message", {"text": GUIDANCE, "idempotency_key": key}, follow=True)

    message = QueuedMessage.objects.get()
    assert (message.spec_id, message.task_id, message.author, message.text) == (planning.pk, None, "alice", GUIDANCE)
    assert sent.redirect_chain == [(f"/specs/{planning.pk}/#messages", 302)]
    assert flash(sent) == ["Message queued: the agent reads it at its next turn."]
    assert flash(again) == [f"This form was sent already: message {message.pk} is pending."]
    # The same message the API lists: one service behind both.
    assert [m["id"] for m in api.get(f"/api/v1/specs/{planning.pk}/messages").json()["results"]] == [message.pk]
    queued = SandboxEvent.objects.get(spec=planning, type="agent.message_queued")
    assert queued.payload["text"] == GUIDANCE
    pending = message_item(again.content.decode(), message)
    assert "Pending" in pending and "waits for the agent's next turn" in pending and GUIDANCE in pending
    assert f"Message from alice to the planning agent queued: “{GUIDANCE}”" in unescape(again.content.decode())

    run_step("spec", planning.pk)  # EXPLORE's first turn: the model sees the message

    run = AgentRun.objects.get(spec=planning, phase="explore")
    html = browser.get(f"/specs/{planning.pk}/").content.decode()
    delivered = message_item(html, message)
    assert "Delivered" in delivered and f'<a href="/runs/{run.pk}/">run {run.pk}</a> at turn 1' in delivered
    assert f"A message delivered to run {run.pk} at turn 1: “{GUIDANCE}”" in unescape(html)
    part = browser.get(f"/specs/{planning.pk}/body?part=messages").content.decode()
    assert 'data-accepting="true"' in part and "Delivered" in message_item(part, message)
    run_page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert run_page.count(GUIDANCE) == 2  # in the transcript where the model saw it, and in the list

    # The planning run's own page takes messages too: they go to its spec's running phase.
    key = form_key(run_page)
    from_run = browser.post(f"/runs/{run.pk}/message", {"text": "Mind the tests/ folder.", "idempotency_key": key})
    second = QueuedMessage.objects.exclude(pk=message.pk).get()
    assert from_run["Location"] == f"/runs/{run.pk}/#messages"
    assert (second.spec_id, second.task_id, second.status, second.idempotency_key) == (
        planning.pk,
        None,
        "pending",
        key,
    )


@pytest.mark.django_db(transaction=True)
def test_a_spec_that_is_not_planning_refuses_messages_with_the_service_s_reason(planning, user):
    browser = logged_in(user)
    Spec.objects.filter(pk=planning.pk).update(status="planning_complete", current_phase="sync")

    page = browser.get(f"/specs/{planning.pk}/").content.decode()
    part = browser.get(f"/specs/{planning.pk}/body?part=messages").content.decode()
    empty = browser.post(f"/specs/{planning.pk}/message", {"text": "   "}, follow=True)
    refused = browser.post(f"/specs/{planning.pk}/message", {"text": GUIDANCE}, follow=True)

    assert 'id="message-form"' not in page  # no box, and no section while it would stay empty
    assert 'data-accepting="false"' in part
    assert "Messages reach the planning agent while a planning phase runs; this spec is planning complete." in part
    assert flash(empty) == ["Message refused: This field may not be blank."]
    assert flash(refused) == [
        "Message refused: only a spec in a planning conversation takes messages; this spec is planning_complete (sync)"
    ]
    assert not QueuedMessage.objects.exists()
    assert not SandboxEvent.objects.filter(type="agent.message_queued").exists()


@pytest.mark.django_db
def test_a_finished_run_or_a_finished_task_takes_no_message(user):
    project = ProjectFactory(owner=user, name="textkit")
    spec = planned_spec(project=project, user=user)
    ticket = Ticket.objects.create(project=project, user=user, spec=spec, title="One", phase=Phase.IMPLEMENTATION)
    task = Task.objects.create(
        ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="implement_feature", title="Implement", status="completed"
    )
    finished = run_with_transcript(
        kind="task", spec=spec, task=task, phase="IMPLEMENTATION", status="finished", messages=[]
    )
    live = run_with_transcript(kind="task", spec=spec, task=task, phase="IMPLEMENTATION", status="running", messages=[])
    browser = logged_in(user)

    page = browser.get(f"/runs/{finished.pk}/").content.decode()
    over = browser.post(f"/runs/{finished.pk}/message", {"text": GUIDANCE}, follow=True)
    task_over = browser.post(f"/runs/{live.pk}/message", {"text": GUIDANCE}, follow=True)

    assert 'id="message-form" hidden>' in page and "This run is finished: it takes no more messages." in page
    assert flash(over) == [f"Message refused: run {finished.pk} is finished: it takes no more messages."]
    assert flash(task_over) == [f"Message refused: task #{task.pk} is completed: its run is over"]
    assert f"Task #{task.pk} is completed: its agent takes no more messages." in task_over.content.decode()
    assert not QueuedMessage.objects.exists()


@pytest.mark.django_db
def test_the_spec_page_shows_the_api_s_budget_and_sets_it_through_the_service(user, api, settings):
    settings.OMOI_SPEC_BUDGET_USD = 10.0
    spec = planned_spec(project=ProjectFactory(owner=user, name="textkit"), user=user)
    # Two planning calls charged as planning charges them: one made and settled, one under way.
    first, second = (
        AgentRun.objects.create(kind="planning", spec=spec, phase=phase) for phase in ("explore", "design")
    )
    accounts = planning_accounts(spec)
    assert budget_reserve(run_id=first.pk, accounts=accounts, amount_usd=Decimal("0.5")) is None
    budget_settle(run_id=first.pk, cost_usd=Decimal("0.123456"))
    assert budget_reserve(run_id=second.pk, accounts=accounts, amount_usd=Decimal("0.25")) is None
    browser = logged_in(user)

    html = browser.get(f"/specs/{spec.pk}/").content.decode()

    budget = api.get(f"/api/v1/specs/{spec.pk}").json()["budget"]
    shown = re.search(
        r'<dd id="budget" data-limit="([^"]+)" data-spent="([^"]+)" data-reserved="([^"]+)" data-remaining="([^"]+)">'
        r"(.*?)</dd>",
        html,
    )
    assert shown.groups()[:4] == (
        budget["limit_usd"],
        budget["spent_usd"],
        budget["reserved_usd"],
        budget["remaining_usd"],
    )
    assert [Decimal(budget[k]) for k in ("limit_usd", "spent_usd", "reserved_usd", "remaining_usd")] == [
        Decimal("10"),
        Decimal("0.123456"),
        Decimal("0.25"),
        Decimal("9.626544"),
    ]
    assert shown.group(5) == ("$0.123456 spent, $0.25 reserved for calls being made, $9.626544 remaining of $10.00")
    assert re.search(r'<form method="post" action="/specs/\d+/budget" class="form inline" id="budget-form">', html)

    for value, problem in (
        ("-1", "Ensure this value is greater than or equal to 0."),
        ("lots", "A valid number is required."),
        ("1.234", "Ensure that there are no more than 2 decimal places."),
        ("", "enter an amount in US dollars."),
    ):
        refused = browser.post(f"/specs/{spec.pk}/budget", {"budget_usd": value}, follow=True)
        assert flash(refused) == [f"Budget refused: {problem}"], value
    assert Spec.objects.get(pk=spec.pk).budget_usd is None

    raised = browser.post(f"/specs/{spec.pk}/budget", {"budget_usd": "25"}, follow=True)

    assert raised.redirect_chain == [(f"/specs/{spec.pk}/#budget", 302)]
    assert flash(raised) == ["Budget set to $25.00."]
    after = api.get(f"/api/v1/specs/{spec.pk}").json()["budget"]
    assert (Decimal(after["limit_usd"]), Decimal(after["remaining_usd"])) == (Decimal("25"), Decimal("24.626544"))
    page = unescape(raised.content.decode())
    assert "$0.123456 spent, $0.25 reserved for calls being made, $24.626544 remaining of $25.00" in page
    assert "Budget set to $25.00 by alice" in page  # the timeline


@pytest.mark.django_db(transaction=True)
def test_the_guardian_s_steps_read_as_words_on_the_spec_and_run_pages(steering, user):
    spec = steering({IMPLEMENT: loop({"tool": "read_file", "input": {"path": "textkit/core.py"}})})
    drain()
    run = AgentRun.objects.get(task__ticket__spec=spec, task__task_type="implement_feature", spec=spec,
                               task__ticket__spec_task__key="TSK-001")  # fmt: skip
    ticket = run.task.ticket
    assert (ticket.phase, ticket.blocked_reason) == ("BLOCKED", "stuck")
    steps = {entry["step"]: entry["turn"] for entry in run.guardian_log}
    browser = logged_in(user)

    spec_page = unescape(browser.get(f"/specs/{spec.pk}/").content.decode())
    run_page = unescape(browser.get(f"/runs/{run.pk}/").content.decode())

    assert re.search(
        rf"Guardian nudged run {run.pk} at turn {steps['nudge']}: repeat: the same call read_file\(", spec_page
    )
    assert re.search(
        rf"Guardian warned again \(escalated\) run {run.pk} at turn {steps['escalate']}: repeat: ", spec_page
    )
    assert re.search(
        rf"Guardian stopped run {run.pk} at turn {steps['stop']} as stuck; its ticket is blocked: repeat: ", spec_page
    )
    blocked = f"Ticket #{ticket.pk} IMPLEMENTATION → BLOCKED, blocked (stuck): implement_feature failed: [Guardian] The"
    assert f"{blocked} run was stopped" in spec_page
    assert f"The guardian's message delivered to run {run.pk} at turn {steps['nudge'] + 1}: “[Guardian] You seem" in (
        spec_page
    )
    # The run's page: the guardian's steps from its log, its messages delivered, no box (the run is over).
    guardian = re.search(r'<ol class="timeline" id="guardian-steps">(.*?)</ol>', run_page, re.S).group(1)
    assert re.search(rf"Turn {steps['nudge']}: nudged the agent: repeat: the same call read_file\(", guardian)
    assert re.search(rf"Turn {steps['escalate']}: warned again \(escalated\): repeat: ", guardian)
    assert re.search(rf"Turn {steps['stop']}: stopped the run as stuck: repeat: ", guardian)
    delivered = re.findall(r'class="queued-message message-delivered source-guardian"', run_page)
    assert len(delivered) == 2
    assert 'id="message-form" hidden>' in run_page
