"""The task templates: which tasks entering each phase creates, defined once.

A template's `key` becomes Task.task_type, so "one task per (ticket, phase, template)" is the
database's unique constraint on (ticket, phase, task_type). `executor` says who carries a task
out: "agent" (a model run in a sandbox) or "host" (the host runs the tests, merges the branch).

A ticket made from a planned SpecTask gets implementation and test tasks built from that
SpecTask's key, title, description, files and acceptance criteria. The SpecTask is read through
`ticket.spec_task` only: the tickets app never imports the planning app.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tickets.models import Executor, Phase, Ticket

CONTEXT_SUMMARY_LIMIT_IN_DESCRIPTION = 2000


@dataclass(frozen=True)
class TaskTemplate:
    key: str
    phase: Phase
    executor: Executor
    title: Callable[[Ticket], str]
    description: Callable[[Ticket], str]


def _criterion_text(criterion: Any) -> str:
    if isinstance(criterion, dict):
        return str(criterion.get("text") or criterion.get("description") or criterion)
    return str(criterion)


def spec_task_brief(ticket: Ticket) -> str:
    """The planned task behind a ticket, as text for a task description: key, title, description,
    files to touch, acceptance criteria and the requirements it covers."""
    spec_task = ticket.spec_task
    if spec_task is None:
        return ""
    lines = [f"Planned task {spec_task.key}: {spec_task.title}"]
    if spec_task.description:
        lines += ["", spec_task.description]
    if spec_task.files:
        lines += ["", "Files:"] + [f"- {path}" for path in spec_task.files]
    if spec_task.acceptance_criteria:
        lines += ["", "Acceptance criteria:"] + [f"- {_criterion_text(c)}" for c in spec_task.acceptance_criteria]
    requirements = list(spec_task.requirements.all())
    if requirements:
        lines += ["", "Requirements covered:"] + [f"- {r.key}: {r.text}" for r in requirements]
    return "\n".join(lines)


def _with_context(ticket: Ticket, text: str) -> str:
    if ticket.context_summary:
        summary = ticket.context_summary[:CONTEXT_SUMMARY_LIMIT_IN_DESCRIPTION]
        return f"{text}\n\nContext from earlier phases:\n{summary}"
    return text


def _paragraphs(*parts: str) -> str:
    return "\n\n".join(part for part in parts if part)


def _about(ticket: Ticket) -> str:
    text = f"Ticket #{ticket.pk}: {ticket.title}"
    if ticket.description:
        text += f"\n\n{ticket.description}"
    return text


def _implement_title(ticket: Ticket) -> str:
    if ticket.spec_task_id:
        return f"Implement {ticket.spec_task.key}: {ticket.spec_task.title}"
    return f"Implement: {ticket.title}"


def _implement_description(ticket: Ticket) -> str:
    if ticket.spec_task_id:
        body = (
            f"{spec_task_brief(ticket)}\n\n"
            "Make the change in the repository so that every acceptance criterion above holds. "
            "Report the files changed and whether tests were touched."
        )
    else:
        body = f"{_about(ticket)}\n\nImplement the change this ticket describes. Report the files changed."
    return _with_context(ticket, body)


def _tests_title(ticket: Ticket) -> str:
    if ticket.spec_task_id:
        return f"Write tests for {ticket.spec_task.key}: {ticket.spec_task.title}"
    return f"Write tests: {ticket.title}"


def _tests_description(ticket: Ticket) -> str:
    if ticket.spec_task_id:
        body = (
            f"{spec_task_brief(ticket)}\n\n"
            f"Write automated tests for {ticket.spec_task.key} that prove each acceptance criterion above, "
            "run them, and report the test results."
        )
    else:
        body = f"{_about(ticket)}\n\nWrite automated tests for this change, run them and report the results."
    return _with_context(ticket, body)


TEMPLATES: tuple[TaskTemplate, ...] = (
    TaskTemplate(
        key="analyze_requirements",
        phase=Phase.REQUIREMENTS,
        executor=Executor.AGENT,
        title=lambda t: f"Analyse requirements: {t.title}",
        description=lambda t: _with_context(
            t,
            _paragraphs(
                _about(t),
                spec_task_brief(t),
                "Write a requirements document (markdown, with the sections '## Requirements' and "
                "'## Acceptance Criteria').",
            ),
        ),
    ),
    TaskTemplate(
        key="create_design",
        phase=Phase.DESIGN,
        executor=Executor.AGENT,
        title=lambda t: f"Design: {t.title}",
        description=lambda t: _with_context(
            t, f"{_about(t)}\n\nWrite a design document (markdown, with an '## Architecture' section)."
        ),
    ),
    TaskTemplate(
        key="implement_feature",
        phase=Phase.IMPLEMENTATION,
        executor=Executor.AGENT,
        title=_implement_title,
        description=_implement_description,
    ),
    TaskTemplate(
        key="write_tests",
        phase=Phase.IMPLEMENTATION,
        executor=Executor.AGENT,
        title=_tests_title,
        description=_tests_description,
    ),
    TaskTemplate(
        key="run_tests",
        phase=Phase.TESTING,
        executor=Executor.HOST,
        title=lambda t: f"Run the test suite: {t.title}",
        description=lambda t: "Run the project's test command on the ticket's branch and record the results.",
    ),
    TaskTemplate(
        key="deploy",
        phase=Phase.DEPLOYMENT,
        executor=Executor.HOST,
        title=lambda t: f"Deploy: {t.title}",
        description=lambda t: "Merge the ticket's branch into the spec's branch and record the deployment.",
    ),
)


def templates_for(phase: str) -> list[TaskTemplate]:
    return [template for template in TEMPLATES if template.phase == phase]


def template_named(key: str) -> TaskTemplate | None:
    return next((template for template in TEMPLATES if template.key == key), None)
