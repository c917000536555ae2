"""The host's verification of an agent's `finish`: it runs the checks itself, in the sandbox, and
only a pass counts. A pass commits the work inside the sandbox and brings it out as a bundle into
the ticket branch; a failure goes back to the model, a bounded number of times, then the task
fails and the ticket is BLOCKED with the evidence."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from omoi.faults import fault_point
from omoi.leases import Held
from sandboxes.models import AgentRun, AgentRunStatus
from sandboxes.services.agent import agent_run_reply
from sandboxes.services.events import events_batch, truncate_text
from sandboxes.workspace import Workspace
from tickets.checks import checks_pass, is_test_path, test_results_of
from tickets.models import BlockedReason, Task
from tickets.services import repository
from tickets.services.execution.outcomes import task_complete_running, task_event, task_give_up
from tickets.services.execution.runs import run_end, test_command_for

GATE_EVIDENCE_TYPES = {"code_changes", "test_results", "deployment"}
OUTPUT_TAIL = 3000


def run_checks(*, workspace: Workspace, command: str) -> dict[str, Any]:
    """Run the test command in the sandbox; the `test_results` artifact content."""
    result = workspace.run_command(command, timeout_s=settings.OMOI_COMMAND_TIMEOUT_S)
    output = "\n".join(part for part in (result.stdout, result.stderr) if part)
    results = test_results_of(
        command=command,
        exit_code=result.exit_code,
        output=output,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
    )
    results["output_tail"] = truncate_text(output[-OUTPUT_TAIL:], OUTPUT_TAIL)
    return results


def _model_artifacts(finish_input: dict[str, Any]) -> list[dict[str, Any]]:
    """What the model offered with finish. Evidence types are the host's to produce: the model
    cannot claim its own test results."""
    offered = finish_input.get("artifacts") or []
    return [a for a in offered if isinstance(a, dict) and a.get("type") not in GATE_EVIDENCE_TYPES]


def task_verify(
    *, run: AgentRun, task: Task, workspace: Workspace, tool_use_id: str, finish_input: dict[str, Any], held: Held
) -> str:
    """The model called finish: the host runs the checks and decides. Ends the step's lease."""
    ticket = task.ticket
    AgentRun.objects.filter(pk=run.pk, status=AgentRunStatus.RUNNING).update(
        status=AgentRunStatus.VERIFYING, updated_at=timezone.now()
    )
    command = test_command_for(ticket)
    if not command:
        reason = "no test command is known: set the project's test_command"
        with events_batch():
            held.assert_mine()
            agent_run_reply(
                run_id=run.pk,
                tool_use_id=tool_use_id,
                content=f"The host cannot verify: {reason}.",
                is_error=True,
                ticket_id=ticket.pk,
            )
            run_end(run=run, status=AgentRunStatus.FAILED, reason=reason)
            task_give_up(task_id=task.pk, reason=reason, blocked=BlockedReason.ENVIRONMENT)
        return "unverifiable"
    test_results = run_checks(workspace=workspace, command=command)
    fault_point("verify.checked")
    passed = checks_pass(test_results)
    summary = str(finish_input.get("summary") or "").strip()
    held.check()
    if passed:
        subject = task.title if ticket.spec_task_id else f"Ticket #{ticket.pk}: {task.title}"
        work = repository.ticket_work_record(
            ticket=ticket, workspace=workspace, base_sha=run.base_sha, message=f"{subject}\n\n{summary}".strip()
        )
        code_changes = {
            "files": work.files,
            "diff_stat": work.diff_stat,
            "tests_touched": any(is_test_path(path) for path in work.files),
            "task_files": work.task_files,
            "base": run.base_sha,
            "commit": work.sha,
        }
        evidence = [
            {"type": "test_results", "content": test_results},
            {"type": "code_changes", "content": code_changes},
        ]
        with events_batch():
            held.assert_mine()
            task_event(task, "task.verification", _verification_payload(task, command, test_results, work.files, True))
            if not task_complete_running(
                task=task,
                result={
                    "summary": summary,
                    "artifacts": evidence + _model_artifacts(finish_input),
                    "commits": [work.sha] if work.sha != run.base_sha else [],
                    "decisions": [
                        a.get("content") for a in _model_artifacts(finish_input) if a.get("type") == "decision"
                    ],
                },
                actor=f"host-verification:run-{run.pk}",
            ):
                return "stale"
            agent_run_reply(
                run_id=run.pk,
                tool_use_id=tool_use_id,
                content=f"Verified by the host: `{command}` passed ({test_results['passed']} tests). Task complete.",
                is_error=False,
                ticket_id=ticket.pk,
            )
            run_end(
                run=run, status=AgentRunStatus.FINISHED, reason="finished and verified", result={"commit": work.sha}
            )
            task_event(
                task,
                "task.verified",
                {"task": task.pk, "commit": work.sha, "tests_passed": test_results["passed"], "summary": summary},
            )
        return "verified"
    report = (
        f"The host ran `{command}`: exit code {test_results['exit_code']}, {test_results['passed']} passed, "
        f"{test_results['failed']} failed, {test_results['errors']} errors"
        f"{' (timed out)' if test_results['timed_out'] else ''}"
        f"{'; no test ran, which never counts as a pass' if not test_results['passed'] else ''}."
        f"\n\nOutput (tail):\n{test_results['output_tail']}"
    )
    with events_batch():
        locked = AgentRun.objects.select_for_update(no_key=True).get(pk=run.pk)
        attempts = locked.verifications + 1
        AgentRun.objects.filter(pk=run.pk).update(
            verifications=F("verifications") + 1, status=AgentRunStatus.RUNNING, updated_at=timezone.now()
        )
        task_event(task, "task.verification", _verification_payload(task, command, test_results, [], False))
        if attempts < settings.OMOI_TASK_MAX_VERIFICATIONS:
            held.assert_mine()
            agent_run_reply(
                run_id=run.pk,
                tool_use_id=tool_use_id,
                content=f"{report}\n\nThe task is not complete. Fix the problem, then call finish again "
                f"({settings.OMOI_TASK_MAX_VERIFICATIONS - attempts} verification(s) left).",
                is_error=True,
                ticket_id=ticket.pk,
            )
            task_event(
                task,
                "task.verification_failed",
                {"task": task.pk, "attempt": attempts, "output_tail": truncate_text(test_results["output_tail"], 1500)},
            )
            return "retry"
        held.assert_mine()
        agent_run_reply(
            run_id=run.pk,
            tool_use_id=tool_use_id,
            content=f"{report}\n\nNo verification is left: the task failed.",
            is_error=True,
            ticket_id=ticket.pk,
        )
        run_end(run=run, status=AgentRunStatus.FAILED, reason=f"checks failed {attempts} times")
        task_give_up(
            task_id=task.pk,
            reason=f"the tests failed at each of {attempts} verifications",
            blocked=BlockedReason.FAILING_CHECKS,
            evidence=[{"type": "test_results", "content": test_results}],
            details=test_results["output_tail"],
        )
    return "failed"


def _verification_payload(
    task: Task, command: str, test_results: dict[str, Any], files: list[str], passed: bool
) -> dict[str, Any]:
    return {
        "task": task.pk,
        "passed": passed,
        "command": command,
        "exit_code": test_results["exit_code"],
        "tests_passed": test_results["passed"],
        "tests_failed": test_results["failed"],
        "tests_errors": test_results["errors"],
        "files": files,
    }
