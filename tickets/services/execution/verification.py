"""The host's verification of an agent's `finish`: it runs the checks itself, in the sandbox, and
only a pass counts. A pass must also carry evidence that means something (tickets/evidence.py):
each test file the task wrote runs on its own before and after the change, and one that already
passed before did not test it; the suite runs under coverage.py, so the evidence says which changed
lines ran. A pass whose evidence holds commits the work inside the sandbox and brings it out as a
bundle into the ticket branch; a failure, or a finding against the evidence, goes back to the model,
a bounded number of times (OMOI_TASK_MAX_VERIFICATIONS, one budget for both), then the task fails
and the ticket is BLOCKED with the evidence."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from omoi.faults import fault_point
from omoi.leases import Held
from omoi.text import storable, storable_json
from sandboxes.models import AgentRun, AgentRunStatus
from sandboxes.services.agent import agent_run_reply
from sandboxes.services.events import events_batch, truncate_text
from sandboxes.workspace import Workspace
from tickets.checks import checks_pass, is_test_path, no_test_explanation, test_results_of
from tickets.evidence import NOT_MEASURED, coverage_not, evidence_findings, red_green_not
from tickets.models import BlockedReason, Task
from tickets.services import repository
from tickets.services.execution import evidence
from tickets.services.execution.outcomes import task_complete_running, task_event, task_give_up
from tickets.services.execution.runs import run_end, test_command_for

logger = logging.getLogger(__name__)

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
    test_results, findings = _checks_with_evidence(task=task, run=run, workspace=workspace, command=command)
    fault_point("verify.checked")
    passed = checks_pass(test_results)
    summary = str(finish_input.get("summary") or "").strip()
    held.check()
    if passed and not findings:
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
        test_results["commit"] = work.sha
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
                content=f"Verified by the host: `{command}` passed ({test_results['passed']} tests)."
                f"{_evidence_sentence(test_results)} Task complete.",
                is_error=False,
                ticket_id=ticket.pk,
            )
            run_end(
                run=run, status=AgentRunStatus.FINISHED, reason="finished and verified", result={"commit": work.sha}
            )
            red_green = test_results.get("red_to_green") or {}
            task_event(
                task,
                "task.verified",
                {
                    "task": task.pk,
                    "commit": work.sha,
                    "tests_passed": test_results["passed"],
                    "summary": summary,
                    "red_to_green": [
                        f["path"] for f in red_green.get("files", []) if f.get("verdict") == "red_to_green"
                    ],
                    "red_to_green_status": red_green.get("status", ""),
                    "coverage_percent": (test_results.get("coverage") or {}).get("percent"),
                },
            )
        return "verified"
    if passed:
        report = (
            f"The host ran `{command}`: {test_results['passed']} passed. But the evidence behind your tests "
            "does not hold:\n" + "\n".join(f"- {finding}" for finding in findings)
        )
    else:
        report = (
            f"The host ran `{command}`: exit code {test_results['exit_code']}, {test_results['passed']} passed, "
            f"{test_results['failed']} failed, {test_results['errors']} errors"
            f"{' (timed out)' if test_results['timed_out'] else ''}"
            f"{'; ' + no_test_explanation(test_results) if not test_results['passed'] else ''}."
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
                {
                    "task": task.pk,
                    "attempt": attempts,
                    "reason": "evidence" if passed else "checks",
                    "findings": [truncate_text(finding, 1000) for finding in findings],
                    "output_tail": truncate_text(test_results["output_tail"], 1500),
                },
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
        if passed:
            reason = f"the tests passed but their evidence did not hold at the last of {attempts} verifications"
            details = "\n".join(findings)
        else:
            reason, details = f"the tests failed at each of {attempts} verifications", test_results["output_tail"]
        run_end(run=run, status=AgentRunStatus.FAILED, reason=f"verification failed {attempts} times")
        task_give_up(
            task_id=task.pk,
            reason=reason,
            blocked=BlockedReason.FAILING_CHECKS,
            evidence=[{"type": "test_results", "content": test_results}],
            details=details,
        )
    return "failed"


def _checks_with_evidence(
    *, task: Task, run: AgentRun, workspace: Workspace, command: str
) -> tuple[dict[str, Any], list[str]]:
    """Run the checks (under coverage.py where the command allows it) and, when they pass, the
    red-to-green runs of the task's test files. Returns the `test_results` content, with its
    `red_to_green` and `coverage` sections, and the findings that send the task back although the
    suite passed. A part of the evidence that the sandbox cannot produce says "not measured" and
    why; it never fails the task by itself."""
    try:
        changes = evidence.task_changes(workspace, base=run.base_sha)
    except evidence.EvidenceError as exc:
        logger.warning("task %s: the task's changes could not be read: %s", task.pk, exc)
        changes = None
    suite = evidence.suite_run(workspace, command=command, changes=changes)
    test_results = suite.test_results
    if not checks_pass(test_results):
        test_results["coverage"] = coverage_not(NOT_MEASURED, "the suite did not pass")
        test_results["red_to_green"] = red_green_not(NOT_MEASURED, "the suite did not pass")
        return storable_json(test_results), []
    test_results["coverage"] = suite.coverage
    if changes is None:
        test_results["red_to_green"] = red_green_not(NOT_MEASURED, "the task's changes could not be read")
        return storable_json(test_results), []
    try:
        red_green = evidence.red_to_green(
            workspace,
            command=command,
            changes=changes,
            fork_point=lambda: evidence.ticket_fork_point(task.ticket, head=run.base_sha),
        )
    except evidence.EvidenceError as exc:
        logger.warning("task %s: red to green could not be measured: %s", task.pk, exc)
        red_green = red_green_not(NOT_MEASURED, f"not measured: {exc}")
    test_results["red_to_green"] = red_green
    test_results["base"] = run.base_sha
    findings = evidence_findings(
        red_green=red_green, coverage=suite.coverage, coverage_required=settings.OMOI_COVERAGE_REQUIRED
    )
    # What the sandbox printed may hold NUL bytes: the evidence is stored as the database accepts it.
    return storable_json(test_results), [storable(finding) for finding in findings]


def _evidence_sentence(test_results: dict[str, Any]) -> str:
    """What the reply to the model adds about the evidence: the files that went red to green, the
    share of changed lines that ran."""
    red_green = test_results.get("red_to_green") or {}
    files = [f["path"] for f in red_green.get("files", []) if f.get("verdict") == "red_to_green"]
    coverage = test_results.get("coverage") or {}
    sentence = f" Red to green: {', '.join(files)}." if files else ""
    if coverage.get("status") == "measured":
        sentence += f" Changed lines run: {coverage.get('percent')}%."
    return sentence


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
        "red_to_green": (test_results.get("red_to_green") or {}).get("red_to_green", 0),
        "passed_before": (test_results.get("red_to_green") or {}).get("passed_before", []),
        "coverage_percent": (test_results.get("coverage") or {}).get("percent"),
    }
