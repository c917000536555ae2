"""What each page shows, read through the apps' selectors and models (never through the REST
API's JSON, whose shapes change independently). Every read starts from what the user may see, so
another user's project, spec or run is a 404 before anything of it is read."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from sandboxes.models import AgentRun, AgentRunKind, AgentRunStatus, QueuedMessage, SandboxEvent
from sandboxes.selectors import last_sequence, run_transcript
from specs import selectors as spec_selectors
from specs.models import Spec, SpecStatus
from specs.services.planning import CANCELLABLE, CONVERSATION_PHASES
from tickets import selectors as ticket_selectors
from tickets.models import Executor, Project, Task, TaskStatus

VERIFICATION_TYPES = ("task.verification", "task.verification_failed", "task.verified", "task.failed")
LIVE_RUN_STATUSES = (AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING)
MESSAGE_FIELDS = ("id", "source", "author", "text", "status", "run_id", "delivered_turn", "delivered_at", "created_at")


def project_for(user, pk: int) -> Project:
    project = ticket_selectors.projects_visible_to(user).select_related("owner").filter(pk=pk).first()
    if project is None:
        raise Http404("no such project")
    return project


def projects_page(user) -> QuerySet[Project]:
    return ticket_selectors.project_list(user=user).annotate(
        specs_total=Count("specs", distinct=True),
        specs_active=Count(
            "specs",
            filter=Q(specs__status__in=[SpecStatus.PLANNING, SpecStatus.PLANNING_COMPLETE, SpecStatus.EXECUTING]),
            distinct=True,
        ),
    )


def project_specs(user, project: Project) -> QuerySet[Spec]:
    return spec_selectors.spec_list(user=user).filter(project=project)


def spec_for(user, pk: int) -> Spec:
    spec = spec_selectors.spec_detail(user=user).filter(pk=pk).first()
    if spec is None:
        raise Http404("no such spec")
    return spec


def spec_controls(spec: Spec) -> list[str]:
    """The controls the spec's state allows, as the planning services decide them (a refused
    control still answers with the service's reason)."""
    controls = []
    if spec.status == SpecStatus.PLANNING_COMPLETE and spec.approved_at is None:
        controls.append("approve")
    if spec.status == SpecStatus.FAILED:
        controls.append("retry")
    if spec.status in (SpecStatus.PLANNING_COMPLETE, SpecStatus.FAILED):
        controls.append("replan")
    if spec.status in CANCELLABLE:
        controls.append("cancel")
    return controls


def pull_request_state(spec: Spec, timeline: list[SandboxEvent]) -> dict[str, Any]:
    """The pull request's link, or in words why there is none (yet)."""
    project = spec.project
    pushed = next((e for e in reversed(timeline) if e.type == "spec.branch_pushed"), None)
    if spec.pull_request_url:
        return {"url": spec.pull_request_url, "number": spec.pull_request_number, "reason": ""}
    if spec.status == SpecStatus.COMPLETED:
        if not project.github_repo:
            where = (
                f"the branch was pushed to {project.repository}"
                if pushed
                else "the branch is being pushed to the project's repository"
            )
            reason = f"No pull request: the project names no GitHub repository (github_repo); {where}."
        elif pushed:
            reason = (
                "The branch was pushed, but the pull request is not open yet: GitHub refused or has not "
                "answered; the step is retried (POST /api/v1/specs/{id}/create-pr retries it now)."
            ).replace("{id}", str(spec.pk))
        else:
            reason = "The spec completed; the pull request step is running."
    elif spec.status in (SpecStatus.FAILED, SpecStatus.CANCELLED):
        reason = f"No pull request: the spec {spec.get_status_display().lower()} before every ticket was done."
    else:
        target = f"on {project.github_repo}" if project.github_repo else "(the project names no GitHub repository)"
        reason = f"No pull request yet: it is opened {target} when every ticket is DONE."
    return {"url": "", "number": None, "reason": reason}


def _tickets_of(spec: Spec) -> dict[int, dict[str, Any]]:
    """Per ticket of the spec: its tasks and their agent runs, in two queries."""
    tickets: dict[int, dict[str, Any]] = defaultdict(lambda: {"tasks": []})
    tasks = Task.objects.filter(ticket__spec=spec).order_by("ticket_id", "id")
    runs_by_task: dict[int, list[AgentRun]] = defaultdict(list)
    runs = AgentRun.objects.filter(spec=spec, kind=AgentRunKind.TASK).only(
        "id", "task_id", "status", "turns", "phase", "started_at"
    )
    for run in runs.order_by("id"):
        runs_by_task[run.task_id].append(run)
    for task in tasks:
        task.runs = runs_by_task.get(task.pk, [])
        tickets[task.ticket_id]["tasks"].append(task)
    return tickets


def spec_page(spec: Spec) -> dict[str, Any]:
    """Everything the spec page shows. The sequence is read first: the page subscribes to the
    events after it, so nothing that happens while the page is built goes unseen."""
    after = last_sequence(spec_id=spec.pk)
    timeline = list(spec_selectors.spec_timeline(spec_id=spec.pk))
    usage = spec_selectors.spec_usage(spec_id=spec.pk)
    usage_by_phase = spec_selectors.spec_usage_by_phase(spec_id=spec.pk)
    tickets = _tickets_of(spec)
    tasks = list(spec_selectors.spec_tasks(spec=spec))
    for task in tasks:
        ticket = getattr(task, "ticket", None)
        task.ticket_tasks = tickets[ticket.pk]["tasks"] if ticket else []
    requirements = list(spec_selectors.spec_requirements(spec=spec))
    criteria = [c for r in requirements for c in r.criteria.all()]
    planning_runs = list(
        AgentRun.objects.filter(spec=spec, kind=AgentRunKind.PLANNING)
        .only("id", "phase", "status", "turns", "started_at")
        .order_by("id")
    )
    design = spec.design or {}
    return {
        "spec": spec,
        "project": spec.project,
        "after": after,
        "timeline": timeline,
        "usage": usage,
        "usage_tokens": int(usage["input_tokens"]) + int(usage["output_tokens"]),
        "usage_cost": Decimal(str(usage["cost_usd"])),
        "usage_by_phase": usage_by_phase,
        "requirements": requirements,
        "criteria_total": len(criteria),
        "criteria_verified": sum(1 for c in criteria if c.verified),
        "tasks": tasks,
        "planning_runs": planning_runs,
        "design": design,
        "exploration": getattr(spec, "phase_data_explore", None) or {},
        "controls": spec_controls(spec),
        "pull_request": pull_request_state(spec, timeline),
        "settled": spec.pk in spec_selectors.specs_settled([spec.pk]),
        "budget": spec_selectors.spec_budget(spec=spec),
        **spec_steering(spec),
    }


def spec_steering(spec: Spec) -> dict[str, Any]:
    """The spec's planning messages (an operator's, the guardian's to its planning runs), and
    whether a new one would reach an agent: only while a planning phase holds a conversation, as
    specs.services.planning.spec_message_send decides (a refused post shows its reason)."""
    accepting = spec.status == SpecStatus.PLANNING and spec.current_phase in CONVERSATION_PHASES
    if accepting:
        why_not = ""
    elif spec.status == SpecStatus.PLANNING:
        why_not = f"The {spec.get_current_phase_display()} step holds no conversation with a model."
    else:
        why_not = (
            "Messages reach the planning agent while a planning phase runs; "
            f"this spec is {spec.get_status_display().lower()}."
        )
    messages = QueuedMessage.objects.filter(spec_id=spec.pk, task__isnull=True).only(*MESSAGE_FIELDS).order_by("id")
    return {"steering": {"accepting": accepting, "why_not": why_not, "messages": list(messages)}}


def board_page(*, project: Project, spec: Spec | None = None) -> dict[str, Any]:
    after = last_sequence(spec_id=spec.pk) if spec else 0
    cards = ticket_selectors.board_cards(project_id=project.pk, spec_id=spec.pk if spec else None)
    keys = {}
    if spec is None:
        keys = dict(Spec.objects.filter(project=project).values_list("pk", "title"))
    for card in cards:
        card["spec_title"] = keys.get(card["spec_id"], "")
        card["label"] = card["title"].removeprefix(f"{card['key']}: ") if card["key"] else card["title"]
    return {
        "project": project,
        "spec": spec,
        "after": after,
        "columns": ticket_selectors.board_columns(cards),
        "total": len(cards),
    }


def project_streams(project: Project) -> list[dict[str, int]]:
    """The specs of a project whose events a project board follows live: the unsettled ones,
    newest first, at most four (a browser opens few connections per server; the board also
    refreshes itself every few seconds for the rest)."""
    open_specs = list(
        Spec.objects.filter(project=project)
        .exclude(status__in=[SpecStatus.CANCELLED, SpecStatus.DRAFT])
        .order_by("-id")
        .values_list("pk", flat=True)[:20]
    )
    settled = spec_selectors.specs_settled(open_specs)
    live = [spec_id for spec_id in open_specs if spec_id not in settled][:4]
    return [{"spec": spec_id, "after": last_sequence(spec_id=spec_id)} for spec_id in live]


def run_for(user, pk: int) -> AgentRun:
    visible = ticket_selectors.project_ids_visible_to(user)
    run = (
        AgentRun.objects.filter(Q(spec__project__in=visible) | Q(task__ticket__project__in=visible))
        .select_related("spec", "task__ticket")
        .filter(pk=pk)
        .first()
    )
    if run is None:
        raise Http404("no such agent run")
    return run


def run_page(run: AgentRun) -> dict[str, Any]:
    after = last_sequence(spec_id=run.spec_id) if run.spec_id else 0
    messages = run_transcript(run=run)
    verifications = []
    if run.spec_id and run.task_id:
        verifications = list(
            SandboxEvent.objects.filter(spec_id=run.spec_id, task_id=run.task_id, type__in=VERIFICATION_TYPES)
            .filter(sequence__lte=after)
            .order_by("sequence")
        )
    return {
        "run": run,
        "after": after,
        "transcript_messages": list(enumerate(messages)),
        "message_count": len(messages),
        "verifications": verifications,
        "live": run.status in LIVE_RUN_STATUSES,
        **run_steering(run),
    }


def run_steering(run: AgentRun) -> dict[str, Any]:
    """The messages of a run (an operator's to its task or, for a planning run, to its spec; the
    guardian's to the run) with their state, the guardian's steps, and whether a new message would
    reach the agent: while the run is live and its task (or its spec's planning phase) still takes
    messages, as the services decide (a refused post shows their reason)."""
    live = run.status in LIVE_RUN_STATUSES
    audience = Q(run_id=run.pk)
    if run.task_id is not None:
        task = run.task
        audience |= Q(run__isnull=True, task_id=run.task_id)
        takes = task.executor == Executor.AGENT and task.status in (TaskStatus.PENDING, TaskStatus.RUNNING)
        refused = f"Task #{task.pk} is {task.get_status_display().lower()}: its agent takes no more messages."
    else:
        spec = run.spec
        audience |= Q(run__isnull=True, task__isnull=True, spec_id=run.spec_id)
        takes = spec is not None and spec.status == SpecStatus.PLANNING and spec.current_phase == run.phase
        refused = "Its planning phase is over: the agent takes no more messages."
    if not live:
        refused = f"This run is {run.get_status_display().lower()}: it takes no more messages."
    messages = QueuedMessage.objects.filter(audience).only(*MESSAGE_FIELDS).order_by("id")
    guardian = [entry for entry in run.guardian_log if isinstance(entry, dict)]
    return {
        "steering": {
            "accepting": live and takes,
            "why_not": "" if live and takes else refused,
            "messages": list(messages),
            "guardian": guardian,
        }
    }


def run_messages(run: AgentRun, start: int) -> dict[str, Any]:
    messages = run_transcript(run=run)
    start = max(0, min(start, len(messages)))
    return {"run": run, "transcript_messages": list(enumerate(messages))[start:], "message_count": len(messages)}
