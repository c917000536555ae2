"""The main job end to end with every step run in this process, as workers would run them (the
worker-based test runs the same path through Celery): an idea becomes a pull request, each unit of
work once, and nothing is left moving or held afterwards."""

import subprocess
from collections import Counter

import pytest

from omoi.models import Lease, LLMUsage
from omoi.reconcile import reconcile
from sandboxes import git
from sandboxes.models import AgentRun, Sandbox, SandboxEvent
from specs.models import Spec, SpecAcceptanceCriterion
from tests.e2e.conftest import launch_sample, sample_script, write_script
from tests.support.steps import drain
from tickets.models import Phase, Task, Ticket

pytestmark = pytest.mark.django_db


def test_an_idea_becomes_a_pull_request_with_each_unit_of_work_done_once(
    api, user, sample_repository, fake_github, execution_env, tmp_path, settings
):
    settings.GITHUB_API_URL = fake_github.url
    settings.OMOI_LLM_PROVIDER = "replay"
    settings.OMOI_REPLAY_SCRIPT = write_script(tmp_path, sample_script())
    spec_id = launch_sample(api, user=user, sample_repository=sample_repository, fake_github=fake_github)
    steps = drain()

    spec = Spec.objects.get(pk=spec_id)
    assert (spec.status, spec.progress, spec.last_error) == ("completed", 100, "")
    assert spec.pull_request_number == 1 and len(fake_github.pulls) == 1
    assert not [step for step in steps if step[2].startswith(("failed", "lost", "held", "stale"))], steps

    # One ticket per planned task, one task per (ticket, phase, template), all completed.
    tickets = list(Ticket.objects.filter(spec=spec).select_related("spec_task").order_by("id"))
    assert [(t.spec_task.key, t.phase) for t in tickets] == [("TSK-001", Phase.DONE), ("TSK-002", Phase.DONE)]
    per_ticket = Counter(Task.objects.filter(ticket__spec=spec).values_list("ticket_id", "phase", "task_type"))
    assert len(per_ticket) == 12 and set(per_ticket.values()) == {1}
    assert set(Task.objects.filter(ticket__spec=spec).values_list("status", flat=True)) == {"completed"}
    assert not SpecAcceptanceCriterion.objects.filter(requirement__spec=spec, verified=False).exists()

    # Usage once per model turn; every run ended; every sandbox released; nothing left to move.
    runs = list(AgentRun.objects.filter(spec=spec))
    assert {run.status for run in runs} == {"finished"}
    assert LLMUsage.objects.filter(spec=spec).count() == sum(run.turns for run in runs)
    assert not LLMUsage.objects.filter(spec=spec, agent_run__isnull=True).exists()
    assert set(Sandbox.objects.filter(spec=spec).values_list("status", flat=True)) == {"released"}
    assert Sandbox.objects.filter(spec=spec, ticket__isnull=False).count() == 2  # one per ticket
    assert not Lease.objects.exists()
    assert {name: count for name, count in reconcile().items() if count} == {}
    sequences = list(SandboxEvent.objects.filter(spec=spec).order_by("id").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))

    # The pushed branch holds each task's commit once and a merge per ticket, and its tests pass.
    checkout = tmp_path / "checkout"
    git.clone(f"{fake_github.url}/acme/textkit.git", checkout, branch=spec.branch_name)
    subjects = git.git_run("log", "--no-merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    # One commit per task that changed files, and the evidence report, each once.
    assert len(subjects) == len(set(subjects)) == 4, subjects
    assert subjects[0] == f"Omoi spec #{spec.pk}: the evidence report", subjects
    merges = git.git_run("log", "--merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    assert merges == ["Merge TSK-002: " + tickets[1].spec_task.title, "Merge TSK-001: " + tickets[0].spec_task.title]
    tests = subprocess.run(["python3", "-m", "unittest", "discover", "-s", "tests"], cwd=checkout, capture_output=True)
    assert tests.returncode == 0, tests.stderr
