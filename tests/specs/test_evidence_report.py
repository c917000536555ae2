"""Criteria to evidence, and the report a reviewer reads: a criterion is verified only by a test that
went red to green in a task covering it; the pull request body maps requirements to criteria to
tickets, commits and tests, lists what is unverified, ends with cost and duration and stays under
GitHub's limit; the full report is committed to the spec branch in the bare mirror, once."""

import shutil

import pytest
from django.utils import timezone

from sandboxes.services import gitstore
from specs.evidence import criterion_evidence_display
from specs.models import SpecAcceptanceCriterion, SpecRequirement
from specs.services.completion import _criteria_verify
from specs.services.report import BODY_LIMIT, pull_request_body, report_path, spec_report, spec_report_commit
from tests.e2e.conftest import make_sample_repository, planned_spec
from tests.factories import ProjectFactory
from tickets.models import Phase, PhaseGateArtifact, Task, Ticket
from tickets.services import repository

COMMIT = "a" * 40
BASE = "b" * 40


def red_green(*, files=(), status="measured", reason="") -> dict:
    return {
        "status": status,
        "reason": reason,
        "before_commit": BASE,
        "red_to_green": sum(1 for f in files if f["verdict"] == "red_to_green"),
        "files": list(files),
    }


def test_file(path: str, verdict: str = "red_to_green") -> dict:
    return {
        "path": path,
        "command": f"python3 -m unittest discover -s tests -t tests -p {path.rsplit('/', 1)[-1]}",
        "verdict": verdict,
        "before": {"outcome": "error", "passed": 0, "failed": 0, "errors": 1, "skipped": 0, "tail": "ImportError"},
        "after": {"outcome": "passed", "passed": 3, "failed": 0, "errors": 0, "skipped": 0, "tail": "OK"},
    }


test_file.__test__ = False  # a builder, not a test

COVERAGE = {
    "status": "measured",
    "percent": 80.0,
    "changed": 5,
    "covered": 4,
    "files": [
        {
            "path": "textkit/stats.py",
            "status": "measured",
            "changed": 5,
            "covered": 4,
            "percent": 80.0,
            "never_run": "9",
        }
    ],
}


def done_ticket(spec, key: str, evidence: dict, *, phase: str = Phase.DONE) -> Ticket:
    """A ticket of the spec as the execution side leaves it: its implementation task completed with
    the host's verification, its TESTING run recorded."""
    spec_task = spec.tasks.get(key=key)
    ticket = Ticket.objects.create(
        project=spec.project, user=spec.user, spec=spec, spec_task=spec_task, title=spec_task.title, phase=phase
    )
    content = {
        "command": "python3 -m unittest discover -s tests -v",
        "passed": 3,
        "failed": 0,
        "errors": 0,
        "skipped": 0,
        "exit_code": 0,
        "commit": COMMIT,
        "base": BASE,
        "red_to_green": evidence,
        "coverage": COVERAGE,
    }
    Task.objects.create(
        ticket=ticket,
        phase=Phase.IMPLEMENTATION,
        task_type="implement_feature",
        title="Implement",
        status="completed",
        result={"commits": [COMMIT], "artifacts": [{"type": "test_results", "content": content}]},
    )
    PhaseGateArtifact.objects.create(
        ticket=ticket,
        phase=Phase.TESTING,
        artifact_type="test_results",
        content={"command": content["command"], "passed": 3, "failed": 0, "exit_code": 0},
        collected_by="test",
    )
    return ticket


@pytest.fixture
def spec(db, user, tmp_path, settings):
    settings.OMOI_REPOS_DIR = tmp_path / "repos"
    project = ProjectFactory(owner=user, repository=str(make_sample_repository(tmp_path / "textkit")))
    spec = planned_spec(project=project, user=user)
    spec.status, spec.completed_at = "completed", timezone.now()
    spec.branch_name = repository.spec_branch_name(spec_id=spec.pk, title=spec.title)
    spec.save()
    return spec


def criteria_of(spec, key: str) -> list[SpecAcceptanceCriterion]:
    return list(SpecAcceptanceCriterion.objects.filter(requirement__spec=spec, requirement__key=key))


def test_a_criterion_is_verified_only_by_a_test_that_went_red_to_green(spec):
    done_ticket(spec, "TSK-001", red_green(files=[test_file("tests/test_stats.py")]))
    done_ticket(spec, "TSK-002", red_green(files=[test_file("tests/test_top_words.py", "not_green_after")]))

    _criteria_verify(spec)

    for criterion in criteria_of(spec, "REQ-001"):
        assert criterion.verified and criterion.verified_at is not None
        assert criterion.evidence["reason"] == "red → green: tests/test_stats.py"
        [ticket] = criterion.evidence["tickets"]
        [task] = ticket["tasks"]
        assert (ticket["key"], task["task_type"], task["commit"]) == ("TSK-001", "implement_feature", COMMIT)
        assert task["red_to_green"]["files"][0]["before"]["outcome"] == "error"
        assert "tail" not in task["red_to_green"]["files"][0]["before"]  # the task keeps the output, not the criterion
        assert task["coverage"]["files"][0]["never_run"] == "9"
    for criterion in criteria_of(spec, "REQ-002"):
        assert not criterion.verified and criterion.verified_at is None
        assert criterion.evidence["reason"].startswith("no test written for it went from failing to passing")

    display = criterion_evidence_display(criteria_of(spec, "REQ-001")[0])
    assert display.status == "verified"
    [row] = display.rows
    assert (row.ticket, row.task, row.commit) == ("TSK-001", "implement_feature", COMMIT[:12])
    [line] = row.tests
    assert (line.path, line.before, line.after, line.verdict) == (
        "tests/test_stats.py",
        "error (1 error)",
        "passed (3 passed)",
        "red → green",
    )
    assert row.coverage == ["textkit/stats.py: 4 of 5 changed lines ran (80.0%), never run: 9"]


def test_what_cannot_be_tested_or_is_not_done_says_why(spec):
    make = "not measured: `make test` does not run pytest or unittest directly (it runs `make`)"
    done_ticket(spec, "TSK-001", red_green(status="not_measured", reason=make))
    done_ticket(spec, "TSK-002", red_green(files=[test_file("tests/test_top_words.py")]), phase=Phase.TESTING)
    extra = SpecRequirement.objects.create(
        spec=spec, key="REQ-003", title="Export", ears_type="event", action="export", text="The system shall export."
    )
    SpecAcceptanceCriterion.objects.create(requirement=extra, position=0, text="exports CSV")

    _criteria_verify(spec)

    assert {c.evidence["reason"] for c in criteria_of(spec, "REQ-001")} == {f"not testable by Omoi here: {make}"}
    assert {c.evidence["reason"] for c in criteria_of(spec, "REQ-002")} == {"TSK-002 is TESTING, not DONE"}
    [uncovered] = criteria_of(spec, "REQ-003")
    assert uncovered.evidence["reason"] == "no ticket covers this criterion's requirement"
    assert not SpecAcceptanceCriterion.objects.filter(requirement__spec=spec, verified=True).exists()

    body = pull_request_body(spec)
    unverified = body[body.index("## Unverified") : body.index("## Cost and duration")]
    assert (
        f"- REQ-001: Runs of whitespace and newlines do not create extra words — not testable by Omoi here: {make}"
        in (unverified)
    )
    assert "- REQ-003: exports CSV — no ticket covers this criterion's requirement" in unverified
    assert "**0 of 6 acceptance criteria verified**" in body


def test_the_body_stays_under_githubs_limit_and_links_the_full_report(spec):
    done_ticket(spec, "TSK-001", red_green(files=[test_file("tests/test_stats.py")]))
    for number in range(300):
        requirement = SpecRequirement.objects.create(
            spec=spec,
            key=f"REQ-{number + 10:03d}",
            title="A large requirement",
            ears_type="ubiquitous",
            action="hold",
            text="The system shall hold. " * 20,
            position=number + 10,
        )
        for position in range(3):
            SpecAcceptanceCriterion.objects.create(requirement=requirement, position=position, text="criterion " * 40)
    _criteria_verify(spec)

    body = pull_request_body(spec)
    report = spec_report(spec)

    assert len(report) > BODY_LIMIT  # the whole story does not fit in a pull request
    assert len(body) <= BODY_LIMIT
    assert f"Full report: [{report_path(spec)}]({report_path(spec)})" in body  # no GitHub repository: the path
    assert "requirement(s) did not fit here: see the full report." in body
    assert "- [x] word_count('The cat sat on the mat.') returns 6\n  - red → green: `tests/test_stats.py`" in body
    assert body.rstrip().endswith("from launch to completion")
    assert "… and " in body and "more in the full report" in body  # 900 unverified criteria, 50 listed


def test_the_full_report_is_committed_to_the_spec_branch_once(spec, tmp_path):
    done_ticket(spec, "TSK-001", red_green(files=[test_file("tests/test_stats.py")]))
    done_ticket(spec, "TSK-002", red_green(files=[test_file("tests/test_top_words.py")]))
    _criteria_verify(spec)
    mirror = repository.spec_repo_prepare(spec=spec, branch=spec.branch_name)
    scope = repository.spec_scope(spec)
    before = gitstore.ref_get(scope=scope, name=spec.branch_name)

    sha = spec_report_commit(spec_id=spec.pk)

    assert gitstore.ref_get(scope=scope, name=spec.branch_name) == sha
    assert gitstore.changed_files(mirror, before, sha) == [report_path(spec)]
    shown = gitstore.git_run("show", f"{sha}:{report_path(spec)}", cwd=mirror)
    assert shown == spec_report(spec)
    assert "- [x] word_count('The cat sat on the mat.') returns 6" in shown
    assert "python3 -m unittest discover -s tests -t tests -p test_stats.py" in shown  # the command of each run
    # A repeated step finds the same report on the branch and commits nothing.
    assert spec_report_commit(spec_id=spec.pk) is None
    # The commit is kept as a bundle: a worker without this mirror rebuilds it.
    shutil.rmtree(mirror)
    gitstore._synced.clear()
    rebuilt = repository.scope_mirror(scope=scope, project=spec.project)
    assert gitstore.has_commit(rebuilt, sha)


def test_the_admin_shows_each_criterions_evidence(admin_client, spec):
    done_ticket(spec, "TSK-001", red_green(files=[test_file("tests/test_stats.py")]))
    _criteria_verify(spec)
    criterion = criteria_of(spec, "REQ-001")[0]

    pages = [
        admin_client.get(f"/admin/specs/spec/{spec.pk}/change/"),
        admin_client.get(f"/admin/specs/specacceptancecriterion/{criterion.pk}/change/"),
        admin_client.get(f"/admin/specs/specrequirement/{criterion.requirement_id}/change/"),
    ]

    for response in pages:
        assert response.status_code == 200
        page = response.content.decode()
        assert "✓ verified" in page and "<code>tests/test_stats.py</code>: error (1 error) → passed (3 passed)" in page
        assert f"<code>{COMMIT[:12]}</code>" in page
        assert "coverage: textkit/stats.py: 4 of 5 changed lines ran (80.0%), never run: 9" in page
