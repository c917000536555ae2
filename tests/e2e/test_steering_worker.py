"""Steering with real workers: a message reaches the model exactly once even when the worker is
SIGKILLed between its sending and its delivery; and two tickets of one spec running in parallel
never spend more than the spec's budget plus one call's reservation."""

from __future__ import annotations

import copy
import time
from decimal import Decimal

import pytest
from django.db.models import Sum

from omoi.models import LLMUsage
from sandboxes.models import AgentRun, QueuedMessage
from specs.models import Spec
from tests.e2e.conftest import sample_script, write_script
from tests.factories import ProjectFactory
from tests.support.generated import TEST_COMMAND, independent_tasks_script
from tickets.models import Ticket

pytestmark = pytest.mark.worker


def wait(predicate, *, timeout: float, worker, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if not worker.alive():
            return None
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{worker.log()}")


def test_a_message_is_seen_once_though_the_worker_dies_before_the_turn_commits(
    start_worker, api, user, sample_repository, execution_env, tmp_path
):
    env = {
        **execution_env,
        "OMOI_REPLAY_SCRIPT": write_script(tmp_path, sample_script()),
        "OMOI_LEASE_S": "3",
        "OMOI_FAULTS": "planning.turn",
        "OMOI_FAULTS_DIR": str(tmp_path / "faults"),
    }
    project = ProjectFactory(owner=user, repository=str(sample_repository))
    spec_id = api.post(
        "/api/v1/specs/launch", {"project": project.pk, "idea": "Add word statistics"}, format="json"
    ).json()["id"]
    sent = api.post(f"/api/v1/specs/{spec_id}/messages", {"text": "Mind the unicode words."}, format="json")
    assert sent.status_code == 201, sent.json()

    worker = start_worker(env=env, name="steer@%h", wait=False)
    wait(lambda: not worker.alive(), timeout=60, worker=worker, what="the fault point")  # died mid-turn
    assert QueuedMessage.objects.get(pk=sent.json()["id"]).status == "pending"  # its turn never committed
    worker.kill()
    worker = start_worker(env=env, name="steer@%h")
    spec = wait(
        lambda: Spec.objects.filter(pk=spec_id, status="planning_complete").first(),
        timeout=90, worker=worker, what="planning_complete",
    )  # fmt: skip

    assert spec is not None
    message = QueuedMessage.objects.get(pk=sent.json()["id"])
    explore = AgentRun.objects.get(spec_id=spec_id, kind="planning", phase="explore")
    assert (message.status, message.run_id, message.delivered_turn) == ("delivered", explore.pk, 1)
    transcript = str(list(explore.transcript.values_list("content", flat=True)))
    assert transcript.count("Mind the unicode words.") == 1
    assert LLMUsage.objects.filter(agent_run=explore).count() == explore.turns


def test_two_tickets_in_parallel_never_spend_past_the_spec_budget(
    start_worker, api, user, sample_repository, execution_env, tmp_path
):
    script = independent_tasks_script(2)
    expensive = {"usage": {"input_tokens": 20_000, "output_tokens": 1_000}}  # $0.075 a turn at $3/$15
    for key in ("TSK-001:implement_feature", "TSK-002:implement_feature"):
        script["conversations"][key] = [
            {"tool": "read_file", "input": {"path": "textkit/core.py", "start_line": line}, **copy.deepcopy(expensive)}
            for line in range(1, 40)
        ]
    env = {**execution_env, "OMOI_REPLAY_SCRIPT": write_script(tmp_path, script), "OMOI_GUARDIAN_ENABLED": "false"}
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_COMMAND)
    budget = Decimal("1.00")
    spec_id = api.post(
        "/api/v1/specs/launch", {"project": project.pk, "idea": "Two features", "require_approval": False},
        format="json",
    ).json()["id"]  # fmt: skip
    assert api.post(f"/api/v1/specs/{spec_id}/budget", {"budget_usd": str(budget)}, format="json").status_code == 200
    worker = start_worker(env=env, concurrency=2)

    spec = wait(lambda: Spec.objects.filter(pk=spec_id, status="failed").first(), timeout=180, worker=worker,
                what="the budget to stop the spec")  # fmt: skip

    spent = LLMUsage.objects.filter(spec_id=spec_id).aggregate(total=Sum("cost_usd"))["total"]
    one_reservation = Decimal("0.16")  # a call's worst case here: its input so far and 8,192 output tokens
    assert spent <= budget + one_reservation, spent
    blocked = Ticket.objects.filter(spec_id=spec_id, phase="BLOCKED", blocked_reason="budget")
    assert blocked.exists()
    assert "the budget of the spec is reached" in blocked.first().blocked_message
    assert "budget" in spec.last_error
    # Both tickets ran at once: their runs overlapped in time.
    runs = list(AgentRun.objects.filter(spec_id=spec_id, kind="task").order_by("started_at"))
    assert len(runs) == 2 and runs[1].started_at < runs[0].updated_at
    detail = api.get(f"/api/v1/specs/{spec_id}").json()["budget"]
    assert Decimal(detail["spent_usd"]) == spent and Decimal(detail["limit_usd"]) == budget
