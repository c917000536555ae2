"""The planning phases run in this process, one model turn per step, as a worker runs them (the
worker test covers the real chain)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from omoi.leases import _held_here
from omoi.llm.replay import ReplayProvider
from omoi.models import Lease, LLMUsage
from sandboxes.models import AgentRun, Sandbox, SandboxEvent
from sandboxes.selectors import run_transcript
from specs.models import Spec, SpecAcceptanceCriterion, SpecRequirement, SpecTask, SpecTaskDependency
from specs.services.planning import spec_cancel, spec_launch, spec_retry
from specs.tasks import spec_step_task
from tests.specs.conftest import run_phase, run_planning, spec_steps
from tests.specs.scripts import (
    DESIGN,
    EXPECTED_DEPENDENCIES,
    EXPECTED_REQUIREMENT_LINKS,
    EXPECTED_REQUIREMENTS,
    EXPLORATION,
    IDEA,
    REQUIREMENTS,
    TASKS,
    planning_script,
    submit,
)
from tests.support.steps import drain, waiting_steps

PLANNING_EVENTS = ("spec.", "agent.started", "agent.finished")


def spec_events(spec):
    return [
        (event.type, event.payload.get("phase"))
        for event in SandboxEvent.objects.filter(spec=spec, type__startswith="spec.").order_by("sequence")
    ]


def snapshot(spec):
    spec = Spec.objects.get(pk=spec.pk)
    return {
        "spec": (spec.status, spec.current_phase, spec.phase_data, spec.design, spec.phase_attempts, spec.last_error),
        "requirements": list(SpecRequirement.objects.filter(spec=spec).values_list("pk", "key", "text", "updated_at")),
        "criteria": list(SpecAcceptanceCriterion.objects.filter(requirement__spec=spec).values_list("pk", "text")),
        "tasks": list(SpecTask.objects.filter(spec=spec).values_list("pk", "key", "title", "updated_at")),
        "links": list(SpecTaskDependency.objects.filter(task__spec=spec).values_list("pk", flat=True)),
        "runs": list(AgentRun.objects.filter(spec=spec).values_list("pk", "status", "turns")),
        "events": SandboxEvent.objects.filter(spec=spec).count(),
        "usage": LLMUsage.objects.filter(spec=spec).count(),
        "sandboxes": Sandbox.objects.filter(spec=spec).count(),
    }


def test_launch_creates_a_planning_spec_and_schedules_exploration(db, user, notes_project, use_script, capture_sends):
    use_script()
    with capture_sends() as sent:
        spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)

    assert (spec.status, spec.current_phase, spec.title, spec.require_approval) == (
        "planning",
        "explore",
        IDEA,
        True,
    )
    assert spec.phase_started_at is not None
    assert waiting_steps() == [("spec", spec.pk)]
    assert sent == [("specs.tasks.spec_step_task", (spec.pk,), "planning")]
    assert spec_events(spec) == [
        ("spec.launched", None),
        ("spec.status_changed", "explore"),
        ("spec.phase_started", "explore"),
    ]


def test_two_launches_make_two_specs(db, user, notes_project, use_script):
    first = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)
    second = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)

    assert first.pk != second.pk
    assert Spec.objects.filter(project=notes_project).count() == 2


def test_each_phase_writes_its_rows_when_it_completes(db, user, notes_project, use_script):
    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA, title="Tags")

    assert spec_steps(spec.pk, count=3) == [("explore", "turn"), ("explore", "turn"), ("explore", "completed")]
    spec.refresh_from_db()
    assert (spec.status, spec.current_phase) == ("planning", "requirements")
    assert spec.phase_data == {"explore": EXPLORATION}
    assert not SpecRequirement.objects.filter(spec=spec).exists()

    assert run_phase(spec.pk) == "completed"
    spec.refresh_from_db()
    assert spec.current_phase == "design"
    requirements = {r.key: r for r in SpecRequirement.objects.filter(spec=spec).prefetch_related("criteria")}
    assert {key: [c.text for c in r.criteria.all()] for key, r in requirements.items()} == EXPECTED_REQUIREMENTS
    assert (requirements["REQ-003"].ears_type, requirements["REQ-003"].priority, requirements["REQ-003"].condition) == (
        "unwanted",
        "low",
        "a caller tags a note number that does not exist",
    )
    assert not SpecTask.objects.filter(spec=spec).exists()

    assert run_phase(spec.pk) == "completed"
    spec.refresh_from_db()
    assert spec.current_phase == "tasks"
    assert spec.design == DESIGN

    assert run_phase(spec.pk) == "completed"
    spec.refresh_from_db()
    assert spec.current_phase == "sync"
    tasks = list(SpecTask.objects.filter(spec=spec).order_by("position"))
    assert [(t.key, t.phase, t.priority, t.estimate_hours) for t in tasks] == [
        ("TSK-001", "IMPLEMENTATION", "high", Decimal("1.50")),
        ("TSK-002", "IMPLEMENTATION", "medium", Decimal("1.00")),
        ("TSK-003", "TESTING", "low", Decimal("0.50")),
    ]
    assert {(link.task.key, link.depends_on.key) for link in SpecTaskDependency.objects.filter(task__spec=spec)} == (
        EXPECTED_DEPENDENCIES
    )
    assert {(t.key, r.key) for t in tasks for r in t.requirements.all()} == EXPECTED_REQUIREMENT_LINKS

    assert run_phase(spec.pk) == "completed"
    spec.refresh_from_db()
    assert (spec.status, spec.current_phase, spec.approved_at) == ("planning_complete", "sync", None)
    assert drain() == [("spec", spec.pk, "idle")]  # nothing moves until someone approves
    assert not Lease.objects.exists()
    assert spec.phase_attempts == {"explore": 1, "requirements": 1, "design": 1, "tasks": 1, "sync": 1}
    assert spec_events(spec) == [
        ("spec.launched", None),
        ("spec.status_changed", "explore"),
        ("spec.phase_started", "explore"),
        ("spec.phase_completed", "explore"),
        ("spec.phase_started", "requirements"),
        ("spec.phase_completed", "requirements"),
        ("spec.phase_started", "design"),
        ("spec.phase_completed", "design"),
        ("spec.phase_started", "tasks"),
        ("spec.phase_completed", "tasks"),
        ("spec.phase_started", "sync"),
        ("spec.phase_completed", "sync"),
        ("spec.planning_complete", None),
        ("spec.status_changed", "sync"),
    ]
    complete = SandboxEvent.objects.get(spec=spec, type="spec.planning_complete")
    assert complete.payload == {
        "requirements": 3,
        "criteria": 5,
        "tasks": 3,
        "dependencies": 3,
        "requirement_links": 4,
        "require_approval": True,
    }
    runs = list(AgentRun.objects.filter(spec=spec).order_by("id"))
    assert [(r.kind, r.phase, r.status, r.turns) for r in runs] == [
        ("planning", "explore", "finished", 3),
        ("planning", "requirements", "finished", 1),
        ("planning", "design", "finished", 2),
        ("planning", "tasks", "finished", 1),
    ]
    # The transcript: the tools offered ran in the checkout; the submit was answered.
    explore = run_transcript(run=runs[0])
    assert [m["role"] for m in explore] == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert "notes/store.py" in explore[2]["content"][0]["content"]
    assert "def add_note" in explore[4]["content"][0]["content"]
    assert explore[-1]["content"][0]["content"].startswith("Accepted: python-library, 2 key files")
    assert LLMUsage.objects.filter(spec=spec).count() == 7
    assert set(Sandbox.objects.filter(spec=spec).values_list("status", flat=True)) == {"released"}


def test_a_repeated_delivery_of_any_step_changes_nothing(db, user, notes_project, use_script):
    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)
    run_planning(spec.pk)
    drain()
    before = snapshot(spec)

    for _ in range(5):  # late copies of the planning steps' messages
        assert spec_step_task(spec.pk) == "held"

    assert snapshot(spec) == before
    assert not Lease.objects.exists()


def test_a_step_another_worker_holds_is_not_run_again(db, user, notes_project, use_script):
    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)
    expires = timezone.now() + timedelta(seconds=30)
    Lease.objects.filter(kind="spec", object_id=spec.pk).update(owner="another-worker", expires_at=expires)

    assert spec_step_task(spec.pk) == "held"

    assert not AgentRun.objects.filter(spec=spec).exists()
    assert not LLMUsage.objects.exists()
    lease = Lease.objects.get(kind="spec", object_id=spec.pk)
    assert (lease.owner, lease.expires_at, lease.claims) == ("another-worker", expires, 0)


def test_without_approval_planning_complete_schedules_the_bridge(db, user, notes_project, use_script, capture_sends):
    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA, require_approval=False)
    for _phase in ("explore", "requirements", "design", "tasks"):
        assert run_phase(spec.pk) == "completed"

    with capture_sends() as sent:
        assert run_phase(spec.pk) == "completed"

    spec.refresh_from_db()
    assert spec.status == "planning_complete" and spec.approved_at is not None and spec.approved_by is None
    assert [(name, args) for name, args, _queue in sent] == [("specs.tasks.spec_step_task", (spec.pk,))]
    assert waiting_steps() == [("spec", spec.pk)]  # the bridge is the spec's next step
    assert SandboxEvent.objects.get(spec=spec, type="spec.approved").payload == {"implicit": True, "actor": "planner"}


# --- Invalid output is sent back and repaired -------------------------------------------------------


def broken_requirements(mutate):
    data = {"requirements": [dict(r) for r in REQUIREMENTS["requirements"]]}
    mutate(data)
    return data


def broken_tasks(mutate):
    data = {"tasks": [dict(t) for t in TASKS["tasks"]]}
    mutate(data)
    return data


def _set(data, kind, index, **values):
    data[kind][index] = {**data[kind][index], **values}


REPAIRS = {
    "wrong shape": (
        "requirements",
        broken_requirements(lambda d: _set(d, "requirements", 1, acceptance_criteria=[], priority="urgent")),
        [
            "requirements[1] (REQ-002).priority: Input should be 'low', 'medium', 'high' or 'critical'",
            "requirements[1] (REQ-002).acceptance_criteria: List should have at least 1 item after validation, not 0",
        ],
    ),
    "malformed EARS sentence": (
        "requirements",
        broken_requirements(lambda d: _set(d, "requirements", 0, text="Tags are stored with notes.")),
        [
            'REQ-001: an event requirement must read "When <trigger>, the <system> shall <response>."; '
            'got "Tags are stored with notes."'
        ],
    ),
    "unknown dependency key": (
        "tasks",
        broken_tasks(lambda d: _set(d, "tasks", 1, depends_on=["TSK-009"])),
        ["TSK-002: depends_on names 'TSK-009', which is not a task key (tasks: TSK-001, TSK-002, TSK-003)"],
    ),
    "a cycle": (
        "tasks",
        broken_tasks(lambda d: _set(d, "tasks", 0, depends_on=["TSK-003"])),
        ["the dependencies form a cycle: TSK-001 → TSK-003 → TSK-001; a task cannot wait for itself"],
    ),
    "an uncovered requirement": (
        "tasks",
        broken_tasks(lambda d: _set(d, "tasks", 2, requirements=["REQ-001"])),
        ["REQ-003 is not covered by any task: add it to the requirements of the task(s) that implement it"],
    ),
}


@pytest.mark.parametrize("kind", list(REPAIRS))
def test_invalid_output_is_sent_back_with_its_problems_and_repaired(db, user, notes_project, use_script, kind):
    phase, broken, problems = REPAIRS[kind]
    tool = {"requirements": "submit_requirements", "tasks": "submit_tasks"}[phase]
    good = {"requirements": REQUIREMENTS, "tasks": TASKS}[phase]
    use_script(planning_script(**{phase: [submit(tool, broken), submit(tool, good)]}))
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)

    outcomes = run_planning(spec.pk)

    assert outcomes == [(p, "completed") for p in ("explore", "requirements", "design", "tasks", "sync")]
    spec.refresh_from_db()
    assert spec.status == "planning_complete"
    assert spec.phase_attempts[phase] == 2
    retry = SandboxEvent.objects.get(spec=spec, type="spec.phase_retry")
    assert retry.payload == {"phase": phase, "attempt": 1, "max_attempts": 3, "problems": problems}
    run = AgentRun.objects.get(spec=spec, phase=phase)
    transcript = run_transcript(run=run)
    [rejection] = transcript[2]["content"]
    assert rejection["is_error"] is True
    assert rejection["content"] == (
        f"The submission was rejected ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n"
        + "\n".join(f"- {p}" for p in problems)
        + "\nFix every problem and call the tool again (2 attempts left)."
    )
    assert transcript[4]["content"][0]["is_error"] is False
    assert SpecRequirement.objects.filter(spec=spec).count() == 3
    assert SpecTask.objects.filter(spec=spec).count() == 3


def test_after_the_last_attempt_the_spec_fails_and_retry_resumes_at_that_phase(db, user, notes_project, use_script):
    cyclic = broken_tasks(lambda d: _set(d, "tasks", 0, depends_on=["TSK-003"]))
    use_script(planning_script(tasks=[submit("submit_tasks", cyclic)] * 3))
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)

    outcomes = run_planning(spec.pk)

    assert outcomes[-1] == ("tasks", "failed")
    spec.refresh_from_db()
    assert (spec.status, spec.current_phase, spec.phase_attempts["tasks"]) == ("failed", "tasks", 3)
    drain()
    assert not Lease.objects.exists()  # a failed spec has no step left
    assert Spec.objects.get(pk=spec.pk).status == "failed"
    assert spec.last_error == (
        "the tasks output was still invalid after 3 attempts:\n"
        "- the dependencies form a cycle: TSK-001 → TSK-003 → TSK-001; a task cannot wait for itself"
    )
    assert not SpecTask.objects.filter(spec=spec).exists()
    failed = SandboxEvent.objects.get(spec=spec, type="spec.phase_failed")
    assert (failed.payload["phase"], failed.payload["attempts"]) == ("tasks", 3)
    assert AgentRun.objects.get(spec=spec, phase="tasks").status == "failed"
    earlier_runs = list(AgentRun.objects.filter(spec=spec).exclude(phase="tasks").values_list("pk", flat=True))

    use_script()  # the model does better this time
    spec = spec_retry(spec_id=spec.pk, user=user)
    assert (spec.status, spec.current_phase, spec.phase_attempts["tasks"], spec.last_error) == (
        "planning",
        "tasks",
        0,
        "",
    )
    assert run_planning(spec.pk) == [("tasks", "completed"), ("sync", "completed")]

    spec.refresh_from_db()
    assert spec.status == "planning_complete"
    assert list(AgentRun.objects.filter(spec=spec).exclude(phase="tasks").values_list("pk", flat=True)) == earlier_runs
    assert list(AgentRun.objects.filter(spec=spec, phase="tasks").values_list("status", flat=True)) == [
        "failed",
        "finished",
    ]
    assert SpecTask.objects.filter(spec=spec).count() == 3


def test_a_model_that_cannot_be_reached_fails_the_phase_readably(db, user, notes_project, use_script, settings):
    use_script(planning_script(explore=[{"text": "Thinking..."}]))
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)

    assert run_phase(spec.pk) == "failed"

    spec.refresh_from_db()
    assert (spec.status, spec.current_phase) == ("failed", "explore")
    assert not Lease.objects.exists()
    assert spec.last_error == (
        "the model could not be used: replay script has 1 turns for 'explore'; turn 2 was asked for"
    )
    run = AgentRun.objects.get(spec=spec)
    assert run.status == "failed"
    assert run_transcript(run=run)[-1] == {
        "role": "user",
        "content": "Continue with the tools; call submit_exploration when you are done.",
    }


def test_a_repository_that_cannot_be_checked_out_fails_the_phase(db, user, notes_project, use_script, tmp_path):
    use_script()
    notes_project.repository = str(tmp_path / "missing")
    notes_project.save()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)

    assert run_phase(spec.pk) == "failed"

    spec.refresh_from_db()
    assert spec.status == "failed"
    assert spec.last_error.startswith(f"the repository {tmp_path / 'missing'} (main) could not be checked out: ")
    assert not AgentRun.objects.filter(spec=spec).exists()


def test_a_cancelled_spec_stops_at_the_next_turn(db, user, notes_project, use_script):
    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)
    spec_cancel(spec_id=spec.pk, user=user)

    assert drain() == [("spec", spec.pk, "idle")]
    assert Spec.objects.get(pk=spec.pk).status == "cancelled"
    assert not AgentRun.objects.filter(spec=spec).exists()
    assert not LLMUsage.objects.exists()
    assert not Lease.objects.exists()


def test_a_phase_resumes_its_transcript_after_a_crash(db, user, notes_project, use_script):
    """A worker died after committing the model's first turn and before ending its step; once its
    lease expires, the step runs again and continues the same conversation rather than starting over."""
    from omoi.leases import lease_claim
    from sandboxes.services.agent import agent_run_start, agent_turn_run
    from sandboxes.tools import READ_ONLY_TOOLS
    from specs import prompts
    from specs.schemas import submit_tool
    from specs.services.planning import planning_workspace

    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)
    held = lease_claim(kind="spec", object_id=spec.pk)
    sandbox, workspace = planning_workspace(spec=spec)
    run = agent_run_start(
        kind="planning", spec_id=spec.pk, phase="explore", system_prompt=prompts.system_prompt("explore"),
        first_message=prompts.first_message(spec, "explore"), sandbox_id=sandbox.pk,
    )  # fmt: skip
    agent_turn_run(
        run=run, workspace=workspace, tools=[*READ_ONLY_TOOLS, submit_tool("explore")],
        terminal_tools={"submit_exploration"}, conversation_key="explore",
    )  # fmt: skip
    held.release_local()  # the worker dies here, holding the lease

    assert spec_step_task(spec.pk) == "held"  # its lease still lives: nobody else runs the step
    Lease.objects.filter(kind="spec", object_id=spec.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert run_phase(spec.pk) == "completed"

    run.refresh_from_db()
    assert (run.status, run.turns) == ("finished", 3)
    assert AgentRun.objects.filter(spec=spec).count() == 1
    assert list(LLMUsage.objects.filter(spec=spec).order_by("turn").values_list("turn", flat=True)) == [1, 2, 3]
    assert Sandbox.objects.filter(spec=spec).count() == 1


class LeaseTakenDuringTheCall(ReplayProvider):
    """The scripted model, plus the passage of time: while its first answer is "in flight" the
    step's lease expires and another worker claims it; the holder's heartbeat then finds it gone."""

    def __init__(self, script_path, spec_id):
        super().__init__(script_path)
        self.spec_id, self.taken = spec_id, False

    def complete(self, **kwargs):
        if not self.taken:
            self.taken = True
            Lease.objects.filter(kind="spec", object_id=self.spec_id).update(
                owner="another-worker", expires_at=timezone.now() - timedelta(seconds=1)
            )
            _held_here("spec", self.spec_id).renew()  # the holder's next heartbeat
        return super().complete(**kwargs)


def test_a_holder_whose_lease_was_taken_stops_before_its_tools_and_commits_nothing(
    db, user, notes_project, use_script, monkeypatch
):
    from sandboxes.services import agent

    script = use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)
    provider = LeaseTakenDuringTheCall(script, spec.pk)
    monkeypatch.setattr(agent, "get_provider", lambda: provider)

    assert spec_step_task(spec.pk) == "lost"

    run = AgentRun.objects.get(spec=spec)
    assert (run.status, run.turns, len(run_transcript(run=run))) == ("running", 0, 1)
    assert not LLMUsage.objects.exists()
    assert not SandboxEvent.objects.filter(spec=spec, type="agent.tool_call").exists()

    # The other worker died too: its lease has expired, so the step runs again, on the same transcript.
    assert spec_step_task(spec.pk) == "turn"
    assert spec_steps(spec.pk, count=2) == [("explore", "turn"), ("explore", "completed")]
    assert list(AgentRun.objects.filter(spec=spec).values_list("pk", "status", "turns")) == [(run.pk, "finished", 3)]
    assert LLMUsage.objects.filter(spec=spec).count() == 3
