"""Steps the host carries out itself: a spec ticket's requirements and design documents (taken from
the plan, inline), the test run of TESTING (in the ticket's sandbox), and the merge of DEPLOYMENT
(in the git store, on any worker: no working tree, a compare-and-set on the spec branch)."""

from __future__ import annotations

from typing import Any

from omoi.faults import fault_point
from omoi.leases import Held
from sandboxes.services.events import events_batch
from sandboxes.services.gitstore import workspace_head
from tickets.checks import checks_pass
from tickets.models import BlockedReason, Executor, Phase, Task
from tickets.services import repository
from tickets.services.execution.outcomes import task_complete_running, task_event, task_give_up
from tickets.services.execution.runs import test_command_for, ticket_workspace
from tickets.services.execution.verification import run_checks

PLANNED_TASK_TYPES = {"analyze_requirements", "create_design"}


def task_mode(task: Task) -> str:
    """How a task is carried out: "planned" (a spec ticket's requirements or design task, done
    from the spec the planner wrote), "agent", "tests" (the host runs the test command) or
    "merge" (the host merges the ticket branch)."""
    if task.ticket.spec_task_id and task.task_type in PLANNED_TASK_TYPES:
        return "planned"
    if task.executor == Executor.AGENT:
        return "agent"
    return "merge" if task.phase == Phase.DEPLOYMENT else "tests"


def planned_document(task: Task) -> dict[str, Any]:
    """The requirements or design document of a spec ticket, from what the planner wrote."""
    ticket = task.ticket
    spec_task = ticket.spec_task
    spec = ticket.spec
    header = f"# {spec_task.key}: {spec_task.title}\n\nPlanned in spec #{spec.pk} “{spec.title}”.\n"
    if task.task_type == "analyze_requirements":
        # .all(): a bulk move prefetched them ("spec_task__requirements__criteria").
        requirements = list(spec_task.requirements.all()) or list(spec.requirements.all())
        lines = [header, "## Requirements", ""]
        lines += [f"- **{r.key}** {r.title} ({r.ears_type}, {r.priority}): {r.text}" for r in requirements]
        lines += ["", "## Acceptance Criteria", ""]
        lines += [f"- {r.key}: {c.text}" for r in requirements for c in r.criteria.all()]
        lines += [f"- {spec_task.key}: {text}" for text in spec_task.acceptance_criteria]
        return {"type": "requirements_doc", "content": {"text": "\n".join(lines)}}
    design = spec.design or {}
    lines = [header, "## Architecture", "", design.get("architecture", "").strip(), "", "## Components", ""]
    lines += [
        f"- **{c.get('name')}**: {c.get('responsibility')} — {', '.join(c.get('files', []))}"
        for c in design.get("components", [])
    ]
    lines += ["", "## This task", "", spec_task.description]
    if spec_task.files:
        lines += ["", "Files: " + ", ".join(spec_task.files)]
    if design.get("risks"):
        lines += ["", "## Risks", ""] + [f"- {risk}" for risk in design["risks"]]
    return {"type": "design_doc", "content": {"text": "\n".join(lines)}}


def planned_complete(*, task: Task) -> bool:
    """Inside the step's transaction: complete a planned document task from the spec's plan."""
    document = planned_document(task)
    return task_complete_running(
        task=task,
        result={"summary": f"{document['type']} taken from the spec's plan", "artifacts": [document]},
        actor="planner",
    )


def host_tests(*, task: Task, held: Held) -> str:
    """TESTING: the host runs the test command on the ticket's work, in its sandbox."""
    ticket = task.ticket
    command = test_command_for(ticket)
    if not command:
        with events_batch():
            held.assert_mine()
            task_give_up(task_id=task.pk, reason="no test command is known", blocked=BlockedReason.ENVIRONMENT)
        return "failed"
    _sandbox, workspace = ticket_workspace(ticket=ticket, task=task)
    test_results = run_checks(workspace=workspace, command=command)
    test_results["commit"] = workspace_head(workspace)
    held.check()
    evidence = [{"type": "test_results", "content": test_results}]
    with events_batch():
        if not checks_pass(test_results):
            held.assert_mine()
            task_give_up(
                task_id=task.pk,
                reason=f"`{command}` failed on the ticket branch",
                blocked=BlockedReason.FAILING_CHECKS,
                evidence=evidence,
                details=test_results["output_tail"],
            )
            return "failed"
        held.assert_mine()
        if task_complete_running(
            task=task,
            result={"summary": f"`{command}`: {test_results['passed']} passed", "artifacts": evidence},
            actor="host-tests",
        ):
            task_event(
                task, "task.verified", {"task": task.pk, "tests_passed": test_results["passed"], "command": command}
            )
    return "passed"


def host_merge(*, task: Task, held: Held) -> str:
    """DEPLOYMENT: merge the ticket branch into the spec branch (or the integration branch)."""
    ticket = task.ticket
    label = ticket.title if ticket.spec_task_id else f"ticket #{ticket.pk}: {ticket.title}"
    base = repository.base_branch_for(ticket)
    result = repository.ticket_work_merge(ticket=ticket, message=f"Merge {label}")
    fault_point("merge.advanced")
    held.check()
    with events_batch():
        if not result.merged:
            held.assert_mine()
            files = ", ".join(result.conflicts) or "unknown files"
            task_give_up(
                task_id=task.pk,
                reason=f"merging into {base} conflicts in {files}",
                blocked=BlockedReason.MERGE_CONFLICT,
                evidence=[{"type": "merge_conflict", "content": {"files": result.conflicts, "branch": base}}],
            )
            return "conflict"
        held.assert_mine()
        if task_complete_running(
            task=task,
            result={
                "summary": f"merged into {base} at {result.sha[:12]}",
                "artifacts": [
                    {"type": "deployment", "content": {"merged": True, "commit": result.sha, "branch": base}}
                ],
                "commits": [result.sha],
            },
            actor="host-merge",
        ):
            task_event(task, "git.merged", {"ticket": ticket.pk, "branch": base, "commit": result.sha})
    return "merged"
