"""Driving a ticket's tasks: agent runs one model turn per Celery task, host steps, and the
host's verification that decides whether an agent's work counts.

The flow for one task:

    tasks_dispatch ─▶ task_run_start (pending → running; one task of a ticket at a time)
        agent task ─▶ agent_run_begin (sandbox on the ticket branch, AgentRun, first message)
                   ─▶ task_turn_run × N (one model turn each; the next is enqueued after commit)
                   ─▶ model calls finish ─▶ task_verify: the host runs the tests in the sandbox
                        pass: commit, fetch into the ticket branch, task_complete
                        fail: the output goes back to the model, a bounded number of times,
                              then the task fails and the ticket is BLOCKED with the evidence
        host task  ─▶ host_step_run: planned docs from the spec, run_tests, or the merge

Every entry point re-reads the database and returns early when its work is done or superseded,
so a duplicated or replayed Celery message changes nothing. A lost message is found by
`execution_sweep`, which beat runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from omoi.llm import LLMError
from sandboxes.models import AgentRun, AgentRunKind, AgentRunStatus
from sandboxes.services.agent import (
    agent_run_finish,
    agent_run_limit_reason,
    agent_run_reply,
    agent_run_start,
    agent_turn_run,
)
from sandboxes.services.events import event_record, truncate_text
from sandboxes.services.sandbox import sandbox_acquire, sandbox_release, sandbox_workspace
from sandboxes.tools import EXECUTION_TOOLS
from sandboxes.workspace import Workspace
from tickets.models import BlockedReason, Executor, Phase, Task, TaskStatus, Ticket
from tickets.selectors import runnable_tasks, task_is_runnable
from tickets.services import repository
from tickets.services.gates import artifact_collect
from tickets.services.tasks import task_complete, task_fail, task_start
from tickets.services.transitions import ticket_transition
from tickets.signals import ticket_blocked

logger = logging.getLogger(__name__)

PLANNED_TASK_TYPES = {"analyze_requirements", "create_design"}
GATE_EVIDENCE_TYPES = {"code_changes", "test_results", "deployment"}
OUTPUT_TAIL = 3000

SYSTEM_PROMPT = """You are an Omoi engineering agent. You work in a git checkout of the project, on a \
branch made for your task, through the tools you are given: list_files, read_file, search, \
write_file, edit_file, run_command and finish. Paths are relative to the repository root; you cannot \
leave it, and the server's secrets are not available to you.

Make the change the task asks for, with tests, following the repository's conventions. Run the \
tests yourself with run_command. When the work is done, call finish with a short summary. The host \
then runs the project's test command itself: your task is complete only when those tests pass. If \
they fail you will see the output and can fix the problem."""


# --- dispatch ---------------------------------------------------------------------------------


def tasks_dispatch(*, task_ids: Iterable[int]) -> None:
    """Schedule runnable tasks to start, on commit. The workflow engine calls this whenever tasks
    become runnable; starting re-checks everything, so dispatching too much is harmless."""
    ids = sorted(set(task_ids))
    if not ids:
        return
    from tickets.tasks import agent_task_start_task

    for task_id in ids:
        agent_task_start_task.delay_on_commit(task_id)


def task_mode(task: Task) -> str:
    """How a task is carried out: "planned" (a spec ticket's requirements or design task, done
    from the spec the planner wrote), "agent", "tests" (the host runs the test command) or
    "merge" (the host merges the ticket branch)."""
    if task.ticket.spec_task_id and task.task_type in PLANNED_TASK_TYPES:
        return "planned"
    if task.executor == Executor.AGENT:
        return "agent"
    return "merge" if task.phase == Phase.DEPLOYMENT else "tests"


def _next_pending_task(ticket: Ticket) -> Task | None:
    return ticket.tasks.filter(phase=ticket.phase, status=TaskStatus.PENDING).order_by("id").first()


def _dispatch_next(ticket_id: int) -> None:
    ticket = Ticket.objects.get(pk=ticket_id)
    following = _next_pending_task(ticket)
    if following is not None:
        tasks_dispatch(task_ids=[following.pk])


def task_run_start(*, task_id: int) -> Task | None:
    """Start a runnable task: pending → running, then its run or host step is enqueued. A ticket
    runs one task at a time, in template order, because its tasks share one branch."""
    with transaction.atomic():
        # Lock order everywhere: the ticket, then its task.
        ticket_id = Task.objects.filter(pk=task_id).values_list("ticket_id", flat=True).first()
        if ticket_id is None:
            return None
        ticket = (
            Ticket.objects.select_for_update(no_key=True, of=("self",)).select_related("spec_task").get(pk=ticket_id)
        )
        task = Task.objects.select_for_update(no_key=True).get(pk=task_id)
        if task.status != TaskStatus.PENDING:
            return None
        if not task_is_runnable(task):
            return None
        if ticket.tasks.filter(status=TaskStatus.RUNNING).exists():
            return None
        first = _next_pending_task(ticket)
        if first is not None and first.pk != task.pk:
            tasks_dispatch(task_ids=[first.pk])
            return None
        task = task_start(task_id=task.pk)
        task.ticket = ticket
        mode = task_mode(task)
        _task_event(
            task, "task.started", {"task": task.pk, "task_type": task.task_type, "phase": task.phase, "mode": mode}
        )
        from tickets.tasks import agent_host_step_task, agent_run_begin_task

        (agent_run_begin_task if mode == "agent" else agent_host_step_task).delay_on_commit(task.pk)
    return task


def _lock_task(task_id: int) -> Task:
    """Lock a task for a state check, taking its ticket's lock first: the order every service
    uses (ticket, then task), so no two of them can deadlock."""
    ticket_id = Task.objects.values_list("ticket_id", flat=True).get(pk=task_id)
    Ticket.objects.select_for_update(no_key=True).filter(pk=ticket_id).first()
    return Task.objects.select_for_update(no_key=True).get(pk=task_id)


def _task_event(task: Task, type: str, payload: dict[str, Any]) -> None:
    """An event about a task, on its spec's stream (ticket and task attached)."""
    ticket = task.ticket
    event_record(type=type, payload=payload, spec_id=ticket.spec_id, ticket_id=ticket.pk, task_id=task.pk)


def _complete_if_running(task: Task, *, result: dict[str, Any], actor: str) -> bool:
    """Inside a transaction: complete a task that is still running and start its ticket's next
    one. False when another delivery already finished it."""
    if _lock_task(task.pk).status != TaskStatus.RUNNING:
        return False
    task_complete(task_id=task.pk, result=result, actor=actor)
    _dispatch_next(task.ticket_id)
    return True


def _ticket_sandbox(task: Task):
    """A sandbox for the task on its ticket branch, or None when it cannot be had (the task then
    fails and its ticket is BLOCKED with reason environment)."""
    ticket = task.ticket
    try:
        repo_dir, _base, branch = repository.ticket_repo_prepare(ticket=ticket)
        return sandbox_acquire(
            spec_id=ticket.spec_id, task_id=task.pk, repository=str(repo_dir), base_ref=branch, branch=branch
        )
    except Exception as exc:  # git or the sandbox provider failed: the task cannot run here
        logger.exception("sandbox for task %s failed", task.pk)
        task_give_up(
            task_id=task.pk, reason=f"the sandbox could not be prepared: {exc}", blocked=BlockedReason.ENVIRONMENT
        )
        return None


# --- agent runs -------------------------------------------------------------------------------


def conversation_key(task: Task) -> str:
    """Names the conversation for replay scripts and usage records: "TSK-001:implement_feature"."""
    owner = task.ticket.spec_task.key if task.ticket.spec_task_id else f"ticket-{task.ticket_id}"
    return f"{owner}:{task.task_type}"


def test_command_for(ticket: Ticket) -> str:
    """The project's test command, else the one planning found while exploring the repository."""
    if ticket.project.test_command:
        return ticket.project.test_command
    if ticket.spec_id:
        return str((ticket.spec.phase_data or {}).get("explore", {}).get("test_command") or "")
    return ""


def first_message(task: Task) -> str:
    ticket = task.ticket
    parts = []
    if ticket.spec_task_id:
        spec_task = ticket.spec_task
        parts.append(f"# {spec_task.key}: {spec_task.title}")
    else:
        parts.append(f"# Ticket #{ticket.pk}: {ticket.title}")
    parts.append(f"## Your task ({task.task_type})\n\n{task.title}\n\n{task.description}".rstrip())
    if ticket.spec_task_id:
        requirements = list(ticket.spec_task.requirements.prefetch_related("criteria"))
        if requirements:
            lines = ["## Requirements this task covers"]
            for requirement in requirements:
                lines.append(f"- {requirement.key} {requirement.title}: {requirement.text}")
                lines += [f"  - acceptance: {criterion.text}" for criterion in requirement.criteria.all()]
            parts.append("\n".join(lines))
        design = ticket.spec.design or {}
        if design.get("architecture"):
            components = "\n".join(
                f"- {c.get('name')}: {c.get('responsibility')} ({', '.join(c.get('files', []))})"
                for c in design.get("components", [])
            )
            parts.append(f"## Design\n\n{design['architecture']}\n\n{components}".rstrip())
    if ticket.context_summary:
        parts.append(f"## Context from earlier phases\n\n{ticket.context_summary}")
    command = test_command_for(ticket)
    if command:
        parts.append(f"## Checks\n\nThe host verifies your work by running `{command}`.")
    parts.append("Call finish(summary) when the work is done and the tests pass.")
    return "\n\n".join(parts)


def _enqueue_turn(run_id: int, turn: int) -> None:
    from tickets.tasks import agent_turn_task

    agent_turn_task.delay_on_commit(run_id, turn)


def _active_run(task: Task) -> AgentRun | None:
    return (
        AgentRun.objects.filter(task=task, status__in=[AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING])
        .order_by("-id")
        .first()
    )


def agent_run_begin(*, task_id: int) -> AgentRun | None:
    """Give a running agent task its sandbox and conversation, then enqueue the first turn. A
    repeat finds the conversation and re-enqueues its current turn."""
    task = Task.objects.select_related("ticket__project", "ticket__spec", "ticket__spec_task").get(pk=task_id)
    if task.status != TaskStatus.RUNNING:
        return None
    run = _active_run(task)
    if run is not None:
        with transaction.atomic():
            _enqueue_turn(run.pk, run.turns)
        return run
    ticket = task.ticket
    acquired = _ticket_sandbox(task)
    if acquired is None:
        return None
    sandbox, _workspace = acquired
    with transaction.atomic():
        _lock_task(task.pk)
        run = _active_run(task)
        if run is None:
            run = agent_run_start(
                kind=AgentRunKind.TASK,
                spec_id=ticket.spec_id,
                task_id=task.pk,
                phase=task.phase,
                system_prompt=SYSTEM_PROMPT,
                first_message=first_message(task),
                sandbox_id=sandbox.pk,
            )
        _enqueue_turn(run.pk, run.turns)
    return run


def _pending_finish(run: AgentRun) -> dict[str, Any] | None:
    """The finish call of the last assistant message, when it is still unanswered."""
    if not run.messages or run.messages[-1].get("role") != "assistant":
        return None
    for block in run.messages[-1].get("content", []):
        if block.get("type") == "tool_use" and block.get("name") == "finish":
            return block
    return None


def task_turn_run(*, run_id: int, turn: int) -> str:
    """One model turn of a task's run. Returns what happened, for logs and tests."""
    run = AgentRun.objects.select_related("task__ticket__project", "task__ticket__spec", "task__ticket__spec_task").get(
        pk=run_id
    )
    task = run.task
    if (
        task is None
        or task.status != TaskStatus.RUNNING
        or run.status
        not in (
            AgentRunStatus.RUNNING,
            AgentRunStatus.VERIFYING,
        )
    ):
        return "stale"
    finish = _pending_finish(run)
    if finish is not None:
        return task_verify(run_id=run.pk, tool_use_id=finish["id"], finish_input=finish.get("input") or {})
    if run.turns != turn:
        return "stale"
    limit = agent_run_limit_reason(
        run,
        max_turns=settings.OMOI_TASK_MAX_TURNS,
        max_cost_usd=Decimal(str(settings.OMOI_TASK_BUDGET_USD)),
        max_seconds=settings.OMOI_TASK_MAX_SECONDS,
    )
    if limit:
        agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason=limit)
        task_give_up(task_id=task.pk, reason=limit, blocked=BlockedReason.BUDGET)
        return "limit"
    workspace = sandbox_workspace(sandbox_id=run.sandbox_id)
    try:
        outcome = agent_turn_run(
            run_id=run.pk,
            expected_turn=turn,
            workspace=workspace,
            tools=EXECUTION_TOOLS,
            terminal_tools={"finish"},
            conversation_key=conversation_key(task),
            ticket_id=task.ticket_id,
        )
    except LLMError as exc:
        agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason=f"model error: {exc}")
        task_give_up(task_id=task.pk, reason=f"the model could not be used: {exc}", blocked=BlockedReason.ENVIRONMENT)
        return "model_error"
    if outcome.kind == "continue":
        with transaction.atomic():
            _enqueue_turn(run.pk, turn + 1)
        return "continue"
    if outcome.kind == "terminal":
        return task_verify(run_id=run.pk, tool_use_id=outcome.tool_use_id, finish_input=outcome.input or {})
    return outcome.kind


# --- verification -----------------------------------------------------------------------------


@dataclass
class TestCounts:
    passed: int
    failed: int


def parse_test_counts(output: str) -> TestCounts:
    """Counts from pytest's or unittest's summary; (0, 0) when neither is found."""
    pytest_passed = re.findall(r"(\d+) passed", output)
    if pytest_passed or re.search(r"\d+ (failed|error)", output):
        failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|errors?)\b", output))
        return TestCounts(passed=int(pytest_passed[-1]) if pytest_passed else 0, failed=failed)
    ran = re.findall(r"Ran (\d+) tests?", output)
    if ran:
        total = int(ran[-1])
        failure_line = re.findall(r"FAILED \(([^)]*)\)", output)
        failed = 0
        if failure_line:
            failed = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", failure_line[-1]))
        skipped = sum(int(n) for n in re.findall(r"skipped=(\d+)", output))
        return TestCounts(passed=max(total - failed - skipped, 0), failed=failed)
    return TestCounts(passed=0, failed=0)


def is_test_path(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return (
        path.startswith(("tests/", "test/"))
        or "/tests/" in path
        or "/test/" in path
        or name.startswith("test_")
        or name.endswith(("_test.py", "_tests.py"))
        or ".test." in name
        or ".spec." in name
    )


def run_checks(*, workspace: Workspace, command: str) -> dict[str, Any]:
    """Run the test command in the sandbox; the `test_results` artifact content."""
    result = workspace.run_command(command, timeout_s=settings.OMOI_COMMAND_TIMEOUT_S)
    output = "\n".join(part for part in (result.stdout, result.stderr) if part)
    counts = parse_test_counts(output)
    return {
        "command": command,
        "exit_code": result.exit_code,
        "passed": counts.passed,
        "failed": counts.failed if counts.failed or result.exit_code == 0 else max(counts.failed, 1),
        "timed_out": result.timed_out,
        "duration_s": result.duration_s,
        "output_tail": output[-OUTPUT_TAIL:],
    }


def checks_pass(test_results: dict[str, Any]) -> bool:
    return (
        test_results["exit_code"] == 0
        and test_results["failed"] == 0
        and test_results["passed"] > 0
        and not test_results.get("timed_out")
    )


def code_changes_of(*, workspace: Workspace, base: str) -> dict[str, Any]:
    files = workspace.changed_files(base)
    return {
        "files": files,
        "diff_stat": workspace.diff_stat(base),
        "tests_touched": any(is_test_path(path) for path in files),
    }


def _model_artifacts(finish_input: dict[str, Any]) -> list[dict[str, Any]]:
    """What the model offered with finish. Evidence types are the host's to produce: the model
    cannot claim its own test results."""
    offered = finish_input.get("artifacts") or []
    return [a for a in offered if isinstance(a, dict) and a.get("type") not in GATE_EVIDENCE_TYPES]


def task_verify(*, run_id: int, tool_use_id: str, finish_input: dict[str, Any]) -> str:
    """The model called finish: the host runs the checks and decides."""
    AgentRun.objects.filter(pk=run_id, status=AgentRunStatus.RUNNING).update(
        status=AgentRunStatus.VERIFYING, updated_at=timezone.now()
    )
    run = AgentRun.objects.select_related("task__ticket__project", "task__ticket__spec", "task__ticket__spec_task").get(
        pk=run_id
    )
    task, ticket = run.task, run.task.ticket
    workspace = sandbox_workspace(sandbox_id=run.sandbox_id)
    base = repository.base_branch_for(ticket)
    command = test_command_for(ticket)
    if not command:
        reason = "no test command is known: set the project's test_command"
        with transaction.atomic():
            agent_run_reply(
                run_id=run.pk, tool_use_id=tool_use_id, content=f"The host cannot verify: {reason}.", is_error=True
            )
            agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason=reason)
        task_give_up(task_id=task.pk, reason=reason, blocked=BlockedReason.ENVIRONMENT)
        return "unverifiable"
    test_results = run_checks(workspace=workspace, command=command)
    code_changes = code_changes_of(workspace=workspace, base=base)
    passed = checks_pass(test_results)
    summary = str(finish_input.get("summary") or "").strip()
    _task_event(
        task,
        "task.verification",
        {
            "task": task.pk,
            "passed": passed,
            "command": command,
            "exit_code": test_results["exit_code"],
            "tests_passed": test_results["passed"],
            "tests_failed": test_results["failed"],
            "files": code_changes["files"],
        },
    )
    evidence = [
        {"type": "test_results", "content": test_results},
        {"type": "code_changes", "content": code_changes},
    ]
    if passed:
        subject = task.title if ticket.spec_task_id else f"Ticket #{ticket.pk}: {task.title}"
        sha = workspace.commit_all(f"{subject}\n\n{summary}".strip()) or workspace.head_sha()
        repository.ticket_work_fetch(
            ticket=ticket, workspace_root=workspace.root, workspace_branch=repository.ticket_branch_name(ticket)
        )
        with transaction.atomic():
            current = _lock_task(task.pk)
            if current.status != TaskStatus.RUNNING:
                return "stale"
            agent_run_reply(
                run_id=run.pk,
                tool_use_id=tool_use_id,
                content=f"Verified by the host: `{command}` passed ({test_results['passed']} tests). Task complete.",
                is_error=False,
            )
            agent_run_finish(
                run_id=run.pk,
                status=AgentRunStatus.FINISHED,
                stop_reason="finished and verified",
                result={"commit": sha},
            )
            _task_event(
                task,
                "task.verified",
                {"task": task.pk, "commit": sha, "tests_passed": test_results["passed"], "summary": summary},
            )
            task_complete(
                task_id=task.pk,
                result={
                    "summary": summary,
                    "artifacts": evidence + _model_artifacts(finish_input),
                    "commits": [sha],
                    "decisions": [
                        a.get("content") for a in _model_artifacts(finish_input) if a.get("type") == "decision"
                    ],
                },
                actor=f"host-verification:run-{run.pk}",
            )
            _dispatch_next(ticket.pk)
        sandbox_release(sandbox_id=run.sandbox_id)
        return "verified"
    with transaction.atomic():
        locked = AgentRun.objects.select_for_update(no_key=True).get(pk=run.pk)
        if _pending_finish(locked) is None:
            return "stale"
        attempts = locked.verifications + 1
        AgentRun.objects.filter(pk=run.pk).update(
            verifications=F("verifications") + 1, status=AgentRunStatus.RUNNING, updated_at=timezone.now()
        )
        report = (
            f"The host ran `{command}`: exit code {test_results['exit_code']}, {test_results['passed']} passed, "
            f"{test_results['failed']} failed{' (timed out)' if test_results['timed_out'] else ''}."
            f"\n\nOutput (tail):\n{test_results['output_tail']}"
        )
        if attempts < settings.OMOI_TASK_MAX_VERIFICATIONS:
            agent_run_reply(
                run_id=run.pk,
                tool_use_id=tool_use_id,
                content=f"{report}\n\nThe task is not complete. Fix the problem, then call finish again "
                f"({settings.OMOI_TASK_MAX_VERIFICATIONS - attempts} verification(s) left).",
                is_error=True,
            )
            _task_event(
                task,
                "task.verification_failed",
                {
                    "task": task.pk,
                    "attempt": attempts,
                    "output_tail": truncate_text(test_results["output_tail"], 1500),
                },
            )
            _enqueue_turn(run.pk, locked.turns)
            return "retry"
        agent_run_reply(
            run_id=run.pk,
            tool_use_id=tool_use_id,
            content=f"{report}\n\nNo verification is left: the task failed.",
            is_error=True,
        )
        agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason=f"checks failed {attempts} times")
        task_give_up(
            task_id=task.pk,
            reason=f"the tests failed at each of {attempts} verifications",
            blocked=BlockedReason.FAILING_CHECKS,
            evidence=evidence,
            details=test_results["output_tail"],
        )
    sandbox_release(sandbox_id=run.sandbox_id)
    return "failed"


def task_give_up(
    *,
    task_id: int,
    reason: str,
    blocked: str,
    evidence: list[dict[str, Any]] | None = None,
    details: str = "",
) -> None:
    """A task that cannot succeed: it fails with its evidence, its ticket is BLOCKED with the typed
    reason, and `ticket_blocked` tells the planning side that this work has ended."""
    with transaction.atomic():
        task = _lock_task(task_id)
        if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
            return
        for artifact in evidence or []:
            artifact_collect(
                ticket_id=task.ticket_id,
                phase=task.phase,
                artifact_type=artifact["type"],
                content=artifact["content"],
                collected_by="host-verification",
            )
        task_fail(task_id=task.pk, error=reason, actor="host", result={"evidence": evidence or []})
        message = f"{task.task_type} failed: {reason}"
        if details:
            message += f"\n\n{truncate_text(details, 2000)}"
        ticket = Ticket.objects.get(pk=task.ticket_id)
        if ticket.phase != Phase.BLOCKED:
            ticket_transition(
                ticket_id=ticket.pk,
                to=Phase.BLOCKED,
                actor="host",
                reason=message[:500],
                blocked_reason=blocked,
                blocked_message=message,
            )
        _task_event(
            task,
            "task.failed",
            {"task": task.pk, "task_type": task.task_type, "reason": reason, "blocked_reason": blocked},
        )
        spec_id, ticket_id = ticket.spec_id, ticket.pk
        transaction.on_commit(
            lambda: ticket_blocked.send(
                sender=Ticket, ticket_id=ticket_id, spec_id=spec_id, reason=blocked, message=message
            )
        )


# --- host steps -------------------------------------------------------------------------------


def planned_document(task: Task) -> dict[str, Any]:
    """The requirements or design document of a spec ticket, from what the planner wrote."""
    ticket = task.ticket
    spec_task = ticket.spec_task
    spec = ticket.spec
    header = f"# {spec_task.key}: {spec_task.title}\n\nPlanned in spec #{spec.pk} “{spec.title}”.\n"
    if task.task_type == "analyze_requirements":
        requirements = list(spec_task.requirements.prefetch_related("criteria")) or list(
            spec.requirements.prefetch_related("criteria")
        )
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


def host_step_run(*, task_id: int) -> str:
    """Carry out a host task: a planned document, the test run, or the merge."""
    task = Task.objects.select_related("ticket__project", "ticket__spec", "ticket__spec_task").get(pk=task_id)
    if task.status != TaskStatus.RUNNING:
        return "stale"
    mode = task_mode(task)
    if mode == "planned":
        document = planned_document(task)
        with transaction.atomic():
            completed = _complete_if_running(
                task,
                result={"summary": f"{document['type']} taken from the spec's plan", "artifacts": [document]},
                actor="planner",
            )
        return "planned" if completed else "stale"
    if mode == "tests":
        return _host_tests(task)
    return _host_merge(task)


def _host_tests(task: Task) -> str:
    ticket = task.ticket
    command = test_command_for(ticket)
    if not command:
        task_give_up(task_id=task.pk, reason="no test command is known", blocked=BlockedReason.ENVIRONMENT)
        return "failed"
    acquired = _ticket_sandbox(task)
    if acquired is None:
        return "failed"
    sandbox, workspace = acquired
    try:
        test_results = run_checks(workspace=workspace, command=command)
    finally:
        sandbox_release(sandbox_id=sandbox.pk)
    evidence = [{"type": "test_results", "content": test_results}]
    if not checks_pass(test_results):
        task_give_up(
            task_id=task.pk,
            reason=f"`{command}` failed on the ticket branch",
            blocked=BlockedReason.FAILING_CHECKS,
            evidence=evidence,
            details=test_results["output_tail"],
        )
        return "failed"
    with transaction.atomic():
        completed = _complete_if_running(
            task,
            result={"summary": f"`{command}`: {test_results['passed']} passed", "artifacts": evidence},
            actor="host-tests",
        )
        if completed:
            _task_event(
                task, "task.verified", {"task": task.pk, "tests_passed": test_results["passed"], "command": command}
            )
    return "passed" if completed else "stale"


def _host_merge(task: Task) -> str:
    ticket = task.ticket
    label = ticket.title if ticket.spec_task_id else f"ticket #{ticket.pk}: {ticket.title}"
    repository.ticket_repo_prepare(ticket=ticket)
    with transaction.atomic():
        # One merge at a time per spec: the project row is the database-wide lock, the host
        # clone's file lock (inside ticket_work_merge) the lock for this machine's git.
        type(ticket.project).objects.select_for_update(no_key=True).get(pk=ticket.project_id)
        if _lock_task(task.pk).status != TaskStatus.RUNNING:
            return "stale"
        result = repository.ticket_work_merge(ticket=ticket, message=f"Merge {label}")
        base = repository.base_branch_for(ticket)
        if not result.merged:
            files = ", ".join(result.conflicts) or "unknown files"
            task_give_up(
                task_id=task.pk,
                reason=f"merging into {base} conflicts in {files}",
                blocked=BlockedReason.MERGE_CONFLICT,
                evidence=[{"type": "merge_conflict", "content": {"files": result.conflicts, "branch": base}}],
            )
            return "conflict"
        _task_event(task, "git.merged", {"ticket": ticket.pk, "branch": base, "commit": result.sha})
        task_complete(
            task_id=task.pk,
            result={
                "summary": f"merged into {base} at {result.sha[:12]}",
                "artifacts": [
                    {"type": "deployment", "content": {"merged": True, "commit": result.sha, "branch": base}}
                ],
                "commits": [result.sha],
            },
            actor="host-merge",
        )
        _dispatch_next(ticket.pk)
    return "merged"


# --- nothing stuck ----------------------------------------------------------------------------


def execution_sweep(*, stuck_after_s: int | None = None, limit: int = 200) -> dict[str, int]:
    """Re-enqueue execution work whose message was lost (a killed worker, a lost broker message).
    Every step is idempotent, so re-enqueuing what is merely slow costs a no-op."""
    from tickets.tasks import agent_host_step_task, agent_run_begin_task, agent_task_start_task, agent_turn_task

    stuck_after_s = settings.OMOI_EXECUTION_STUCK_AFTER_S if stuck_after_s is None else stuck_after_s
    cutoff = timezone.now() - timedelta(seconds=stuck_after_s)
    counts = {"turns": 0, "starts": 0, "host_steps": 0, "dispatches": 0}
    active_runs = AgentRun.objects.filter(
        kind=AgentRunKind.TASK, status__in=[AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING], updated_at__lt=cutoff
    )[:limit]
    for run in active_runs:
        agent_turn_task.delay(run.pk, run.turns)
        counts["turns"] += 1
    live_run = AgentRun.objects.filter(
        task=OuterRef("pk"), status__in=[AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING]
    )
    running = (
        Task.objects.filter(status=TaskStatus.RUNNING, updated_at__lt=cutoff)
        .select_related("ticket__spec_task")
        .annotate(has_live_run=Exists(live_run))[:limit]
    )
    for task in running:
        if task_mode(task) != "agent":
            agent_host_step_task.delay(task.pk)
            counts["host_steps"] += 1
        elif not task.has_live_run:
            agent_run_begin_task.delay(task.pk)
            counts["starts"] += 1
    for task_id in runnable_tasks().filter(updated_at__lt=cutoff).values_list("pk", flat=True)[:limit]:
        agent_task_start_task.delay(task_id)
        counts["dispatches"] += 1
    return counts
