"""`manage.py omoi launch "<idea>" --project NAME [--no-approval] [--wait] [--user USERNAME]`:
launch a spec and, with --wait, follow its planning phase by phase (from the spec's events in the
database) and end with a summary: requirements, tasks, dependencies and the tokens used."""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db.models import Count, Sum

from omoi.models import LLMUsage
from sandboxes.models import SandboxEvent
from sandboxes.providers import sandbox_boundary_line
from specs.models import Spec, SpecStatus
from specs.services.planning import spec_launch
from specs.services.sync import spec_counts
from tickets.models import Project
from tickets.selectors import projects_visible_to

POLL_S = 0.5


def register(subparsers) -> None:
    parser = subparsers.add_parser("launch", help="launch a spec for an idea and show its planning")
    parser.add_argument("idea", help="what you want done, in a sentence or a paragraph")
    parser.add_argument("--project", required=True, help="the project's name")
    parser.add_argument("--user", help="act as this user (default: the project's owner)")
    parser.add_argument("--title", default="", help="the spec's title (default: from the idea)")
    parser.add_argument(
        "--no-approval", action="store_true", help="execute as soon as planning completes, without approval"
    )
    parser.add_argument("--wait", action="store_true", help="follow planning until it ends, then print a summary")
    parser.add_argument("--timeout", type=int, default=900, help="seconds to wait with --wait (default 900)")
    parser.set_defaults(handler=handle)


def _project_and_user(name: str, username: str | None):
    if username:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        projects = list(projects_visible_to(user).filter(name=name))
        if not projects:
            raise CommandError(f"user {username!r} has no project named {name!r}")
        return projects[0], user
    projects = list(Project.objects.filter(name=name).select_related("owner"))
    if not projects:
        raise CommandError(f"no project named {name!r}")
    if len(projects) > 1:
        owners = ", ".join(sorted(p.owner.get_username() for p in projects))
        raise CommandError(f"{len(projects)} projects are named {name!r} (owners: {owners}); pass --user")
    return projects[0], projects[0].owner


def describe(event: SandboxEvent) -> str | None:
    """One line of progress for a planning event, or None for events not shown."""
    payload = event.payload or {}
    phase = str(payload.get("phase", "")).upper()
    if event.type == "spec.phase_started":
        return f"▶ {phase}"
    if event.type == "spec.phase_completed":
        summary = payload.get("summary")
        return f"✓ {phase} done" + (f": {summary}" if summary else "")
    if event.type == "spec.phase_retry":
        problems = payload.get("problems") or []
        lines = [f"↺ {phase}: output rejected (attempt {payload.get('attempt')}), sent back to the model"]
        return "\n".join(lines + [f"    - {problem}" for problem in problems[:5]])
    if event.type == "spec.phase_failed":
        return f"✗ {phase} failed after {payload.get('attempts')} attempts"
    if event.type == "spec.phase_requeued":
        return f"… {phase} showed no sign of life; re-enqueued"
    if event.type == "agent.tool_call" and not str(payload.get("name", "")).startswith("submit_"):
        arguments = payload.get("input") or {}
        target = arguments.get("path") or arguments.get("pattern") or ""
        return f"    · {payload.get('name')} {target}".rstrip()
    if event.type == "sandbox.unconfined":
        allowed = "run anyway (OMOI_ALLOW_UNCONFINED)" if payload.get("commands_allowed") else "refused"
        return f"! sandbox {payload.get('sandbox')}: {payload.get('reason')}; commands are {allowed}"
    if event.type == "spec.planning_complete":
        return "✓ planning complete"
    if event.type == "spec.approved" and payload.get("implicit"):
        return "✓ approved implicitly (--no-approval): the tasks become tickets"
    return None


def follow(command, spec: Spec, *, timeout: int) -> Spec:
    """Print the spec's planning events until planning is over (complete, failed or cancelled)."""
    after = 0
    deadline = time.monotonic() + timeout
    while True:
        for event in SandboxEvent.objects.filter(spec=spec, sequence__gt=after).order_by("sequence"):
            after = event.sequence
            line = describe(event)
            if line:
                command.stdout.write(line)
        spec.refresh_from_db()
        if spec.status not in (SpecStatus.DRAFT, SpecStatus.PLANNING):
            if not SandboxEvent.objects.filter(spec=spec, sequence__gt=after).exists():
                return spec
            continue
        if time.monotonic() > deadline:
            raise CommandError(
                f"spec {spec.pk} is still planning ({spec.current_phase}) after {timeout} s: is a worker running? "
                "(make worker)"
            )
        time.sleep(POLL_S)


def summary(spec: Spec) -> str:
    counts = spec_counts(spec=spec)
    usage = LLMUsage.objects.filter(spec=spec).aggregate(
        calls=Count("id"), input=Sum("input_tokens"), output=Sum("output_tokens"), cost=Sum("cost_usd")
    )
    tokens_in, tokens_out = usage["input"] or 0, usage["output"] or 0
    lines = [
        f"Spec #{spec.pk} {spec.title!r}: {spec.status} (phase {spec.current_phase})",
        f"  requirements  {counts['requirements']} ({counts['criteria']} acceptance criteria)",
        f"  tasks         {counts['tasks']}",
        f"  dependencies  {counts['dependencies']} between tasks, {counts['requirement_links']} task → requirement",
        f"  model         {usage['calls']} calls, {tokens_in + tokens_out} tokens "
        f"({tokens_in} in, {tokens_out} out), about ${usage['cost'] or 0:.4f}",
    ]
    if spec.status == SpecStatus.PLANNING_COMPLETE and spec.approved_at is None:
        lines.append(f"  next          approve it: POST /api/v1/specs/{spec.pk}/approve")
    return "\n".join(lines)


def handle(command, options) -> None:
    project, user = _project_and_user(options["project"], options.get("user"))
    if not options["idea"].strip():
        raise CommandError("the idea is empty")
    spec = spec_launch(
        project_id=project.pk,
        user=user,
        idea=options["idea"],
        title=options.get("title") or "",
        require_approval=not options["no_approval"],
    )
    approval = "executes when planning completes" if options["no_approval"] else "waits for approval when planned"
    command.stdout.write(f"Spec #{spec.pk} launched on {project.name} as {user.get_username()}; it {approval}.")
    command.stdout.write(f"Sandboxes: {sandbox_boundary_line()}")
    if not options["wait"]:
        command.stdout.write(f"A worker plans it; follow with GET /api/v1/specs/{spec.pk}/events?after=0")
        return
    spec = follow(command, spec, timeout=options["timeout"])
    command.stdout.write("")
    command.stdout.write(summary(spec))
    if spec.status in (SpecStatus.FAILED, SpecStatus.CANCELLED):
        raise CommandError(f"planning {spec.status}: {spec.last_error or spec.status}")
