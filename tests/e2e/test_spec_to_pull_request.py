"""The main job end to end, with a real worker process: launch → planning → approve → bridge →
agent runs (replayed) that really edit the repository and whose tests really pass → every ticket
DONE → spec completed → exactly one pull request on a local server that speaks the GitHub API."""

import subprocess

import pytest

from sandboxes import git
from sandboxes.models import SandboxEvent
from specs.models import Spec, SpecAcceptanceCriterion
from tests.e2e.conftest import sample_script, write_script
from tests.factories import ProjectFactory
from tests.worker import wait_for
from tickets.models import Phase, Task, Ticket

pytestmark = pytest.mark.worker


def test_an_idea_becomes_a_pull_request(
    start_worker, api, user, sample_repository, fake_github, execution_env, tmp_path, settings
):
    settings.GITHUB_API_URL = fake_github.url
    worker = start_worker(
        env={
            **execution_env,
            "OMOI_REPLAY_SCRIPT": write_script(tmp_path, sample_script()),
            "GITHUB_API_URL": fake_github.url,
        }
    )
    fake_github.git.seed("acme/textkit", sample_repository)  # GitHub has the repository and its main
    project = ProjectFactory(owner=user, repository=str(sample_repository), github_repo="acme/textkit", test_command="")

    launched = api.post("/api/v1/specs/launch", {"project": project.pk, "idea": "Add word statistics"}, format="json")
    assert launched.status_code == 201, launched.json()
    spec_id = launched.json()["id"]

    wait_for(
        lambda: Spec.objects.get(pk=spec_id).status == "planning_complete", timeout=120, worker=worker,
        message="planning_complete",
    )  # fmt: skip
    approved = api.post(f"/api/v1/specs/{spec_id}/approve")
    assert approved.status_code == 200, approved.json()

    spec = wait_for(
        lambda: Spec.objects.filter(pk=spec_id, pull_request_number__isnull=False).first(),
        timeout=240, worker=worker, message="the pull request",
    )  # fmt: skip

    assert spec.status == "completed" and spec.progress == 100
    tickets = list(Ticket.objects.filter(spec=spec).select_related("spec_task").order_by("id"))
    assert [t.spec_task.key for t in tickets] == ["TSK-001", "TSK-002"]
    assert {t.phase for t in tickets} == {Phase.DONE}
    assert list(tickets[1].dependencies.all()) == [tickets[0]]
    assert not Task.objects.filter(ticket__spec=spec).exclude(status="completed").exists()
    assert SpecAcceptanceCriterion.objects.filter(requirement__spec=spec).count() == 5
    assert not SpecAcceptanceCriterion.objects.filter(requirement__spec=spec, verified=False).exists()

    assert len(fake_github.pulls) == 1
    pull = fake_github.pulls[0]
    assert (pull["head"]["ref"], pull["base"]["ref"]) == (spec.branch_name, "main")
    assert spec.pull_request_url == pull["html_url"] and spec.pull_request_number == 1
    assert "REQ-001" in pull["body"] and "REQ-002" in pull["body"]
    for ticket in tickets:
        assert f"Ticket #{ticket.pk} {ticket.spec_task.key}" in pull["body"]
    # Each criterion with the test that went red to green for it (failing before the change, passing after).
    red_to_green = {"REQ-001": "tests/test_stats.py", "REQ-002": "tests/test_top_words.py"}
    criteria = list(SpecAcceptanceCriterion.objects.filter(requirement__spec=spec).select_related("requirement"))
    for criterion in criteria:
        test = red_to_green[criterion.requirement.key]
        line = f"- [x] {criterion.text}\n  - red → green: `{test}` error (1 error) → passed"
        assert line in pull["body"], line
    assert "Every acceptance criterion is verified." in pull["body"]
    assert pull["body"].rstrip().endswith("from launch to completion") and "Model cost: $" in pull["body"]
    report = f"docs/omoi/SPEC-{spec.pk}.md"
    assert f"/acme/textkit/blob/{spec.branch_name}/{report})" in pull["body"]

    # The spec branch was pushed to the GitHub repository and its tests really pass.
    checkout = tmp_path / "checkout"
    git.clone(f"{fake_github.url}/acme/textkit.git", checkout, branch=spec.branch_name)
    log = git.git_run("log", "--format=%s", "origin/main..HEAD", cwd=checkout)
    assert "TSK-001: " in log and "TSK-002: " in log
    full_report = (checkout / report).read_text()  # the full report travels with the branch
    assert all(
        criterion.text in full_report for criterion in SpecAcceptanceCriterion.objects.filter(requirement__spec=spec)
    )
    tests = subprocess.run(
        ["python3", "-m", "unittest", "discover", "-s", "tests"], cwd=checkout, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stderr
    assert "Ran 8 tests" in tests.stderr

    types = list(SandboxEvent.objects.filter(spec=spec).order_by("sequence").values_list("type", flat=True))
    for expected in ("spec.planning_complete", "agent.turn", "agent.tool_call", "agent.tool_result",
                     "task.verified", "ticket.transitioned", "git.merged", "spec.completed",
                     "spec.pull_request_opened"):  # fmt: skip
        assert expected in types, expected
    sequences = list(SandboxEvent.objects.filter(spec=spec).order_by("id").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))

    events = api.get(f"/api/v1/specs/{spec_id}/events?after={sequences[-3]}").json()
    assert [e["sequence"] for e in events["results"]] == sequences[-2:]
