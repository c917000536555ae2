"""`omoi replay --spec N [--repository PATH]`: run a finished spec again, with the model's answers
taken from its stored transcripts and no API key, on a fresh clone of its repository, and say
whether it came to the same result: the same tickets, the same tool calls, the same verifications.
A failure seen in production can be reproduced on a laptop.

The stored conversations become a replay script (one per planning phase and per task; a task that
ran more than once replays its last run, the one whose result stands). The new spec runs in this
process, step by step, as a worker would run it; it opens no pull request.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

FINISHED = ("completed", "failed")


def register(subparsers) -> None:
    parser = subparsers.add_parser("replay", help="run a finished spec again from its stored transcripts")
    parser.add_argument("--spec", type=int, required=True, help="the spec to replay")
    parser.add_argument(
        "--repository",
        help="the repository to replay on (default: a fresh clone of the spec's project repository)",
    )
    parser.add_argument("--timeout", type=int, default=900, help="give up after this many seconds")
    parser.add_argument("--script-out", help="also write the replay script built from the transcripts here")
    parser.set_defaults(handler=handle)


def conversation_key(run) -> str | None:
    if run.kind == "planning":
        return run.phase
    task = run.task
    if task is None:
        return None
    owner = task.ticket.spec_task.key if task.ticket.spec_task_id else f"ticket-{task.ticket_id}"
    return f"{owner}:{task.task_type}"


def script_from_spec(spec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The replay script of a spec's stored conversations, and for each conversation the original's
    tool calls (name and input, turn by turn) to compare with."""
    from omoi.models import LLMUsage
    from sandboxes.models import AgentRun
    from sandboxes.selectors import run_transcript

    runs = AgentRun.objects.filter(spec=spec).select_related("task__ticket__spec_task").order_by("id")
    last: dict[str, Any] = {}
    for run in runs:
        key = conversation_key(run)
        if key:
            last[key] = run
    conversations: dict[str, list] = {}
    calls: dict[str, list] = {}
    for key, run in last.items():
        usage = {
            turn: row
            for turn, row in (
                (row.turn, row) for row in LLMUsage.objects.filter(agent_run=run).exclude(turn__isnull=True)
            )
        }
        turns, tool_calls = [], []
        for number, message in enumerate((m for m in run_transcript(run=run) if m["role"] == "assistant"), start=1):
            content = message["content"] if isinstance(message["content"], list) else [
                {"type": "text", "text": str(message["content"])}
            ]  # fmt: skip
            turn: dict[str, Any] = {
                "content": content,
                "stop_reason": "tool_use" if any(b.get("type") == "tool_use" for b in content) else "end_turn",
            }
            if number in usage:
                row = usage[number]
                turn["usage"] = {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens}
            turns.append(turn)
            tool_calls.append([(b.get("name"), b.get("input")) for b in content if b.get("type") == "tool_use"])
        conversations[key] = turns
        calls[key] = tool_calls
    script = {
        "model": "replay",
        "recorded_for": f"spec #{spec.pk} {spec.title!r}, replayed from its stored transcripts",
        "conversations": conversations,
    }
    return script, calls


def run_inline(spec_id: int, *, timeout: float) -> None:
    """Run the spec's and its tickets' steps here until the spec is finished (or nothing waits)."""
    from omoi.models import Lease
    from specs.models import Spec
    from specs.services.steps import spec_step
    from tickets.services.execution import ticket_step

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spec = Spec.objects.get(pk=spec_id)
        if spec.status in FINISHED or spec.status == "cancelled":
            if spec.status != "completed" or spec.branch_pushed_at or not Lease.objects.filter(owner="").exists():
                return
        waiting = list(Lease.objects.filter(owner="").order_by("enqueued_at").values_list("kind", "object_id"))
        if not waiting:
            time.sleep(0.05)
            if not Lease.objects.filter(owner="").exists():
                return
            continue
        for kind, object_id in waiting:
            if kind == "spec":
                spec_step(spec_id=object_id)
            elif kind == "ticket":
                ticket_step(ticket_id=object_id)
    raise CommandError(f"the replay did not finish in {timeout:.0f} s")


def outcome_of(spec) -> dict[str, Any]:
    from sandboxes.models import SandboxEvent
    from tickets.models import Ticket

    verifications = defaultdict(list)
    for event in SandboxEvent.objects.filter(spec=spec, type="task.verification").select_related("task__ticket"):
        task = event.task
        owner = task.ticket.spec_task.key if task and task.ticket.spec_task_id else "?"
        verifications[f"{owner}:{task.task_type if task else '?'}"].append(bool(event.payload.get("passed")))
    return {
        "status": spec.status,
        "tickets": sorted(Ticket.objects.filter(spec=spec).values_list("spec_task__key", "phase")),
        "verifications": dict(verifications),
    }


def handle(command, options: dict[str, Any]) -> None:
    from sandboxes import git
    from specs.models import Spec
    from specs.services.planning import spec_launch
    from tickets.models import Project

    spec = Spec.objects.filter(pk=options["spec"]).select_related("project", "user").first()
    if spec is None:
        raise CommandError(f"there is no spec {options['spec']}")
    if spec.status not in FINISHED:
        raise CommandError(f"spec {spec.pk} is {spec.status}: only a completed or failed spec can be replayed")
    script, original_calls = script_from_spec(spec)
    missing = [
        phase for phase in ("explore", "requirements", "design", "tasks") if phase not in script["conversations"]
    ]
    if spec.current_phase in ("execute", "complete") and missing:
        raise CommandError(
            f"spec {spec.pk} has no stored planning conversation for {', '.join(missing)} (it was planned "
            "another way): it cannot be replayed"
        )
    if not script["conversations"]:
        raise CommandError(f"spec {spec.pk} has no stored conversation to replay")
    workdir = Path(tempfile.mkdtemp(prefix=f"omoi-replay-{spec.pk}-"))
    script_path = workdir / "script.json"
    script_path.write_text(json.dumps(script))
    if options.get("script_out"):
        Path(options["script_out"]).write_text(json.dumps(script, indent=2))
    repository = options.get("repository")
    if not repository:
        repository = str(workdir / "repository")
        command.stdout.write(f"  cloning {spec.project.repository} ...\n")
        git.clone(spec.project.repository, repository)
    original = spec.project
    project = Project.objects.create(
        owner=spec.user,
        name=f"replay of spec {spec.pk} ({time.strftime('%Y-%m-%d %H:%M:%S')})",
        repository=str(repository),
        default_branch=original.default_branch,
        test_command=original.test_command,
        setup_command=original.setup_command,
        network_allowed=original.network_allowed,
    )
    settings.OMOI_LLM_PROVIDER = "replay"
    settings.OMOI_REPLAY_SCRIPT = str(script_path)
    command.stdout.write(f"▶ replaying spec #{spec.pk} “{spec.title}” ({len(script['conversations'])} conversations)\n")
    replay = spec_launch(
        project_id=project.pk, user=spec.user, idea=spec.idea, title=spec.title, require_approval=False
    )
    run_inline(replay.pk, timeout=options["timeout"])
    replay.refresh_from_db()
    replayed_script, replayed_calls = script_from_spec(replay)
    before, after = outcome_of(spec), outcome_of(replay)
    differences = []
    for field in ("status", "tickets", "verifications"):
        if before[field] != after[field]:
            differences.append(f"{field}: {before[field]!r} → {after[field]!r}")
    for key in sorted(set(original_calls) | set(replayed_calls)):
        if original_calls.get(key) != replayed_calls.get(key):
            differences.append(f"tool calls of {key} differ")
    command.stdout.write(f"  replay: spec #{replay.pk} {replay.status}\n")
    for key in sorted(after["verifications"]):
        command.stdout.write(f"    {key}: verifications {after['verifications'][key]}\n")
    if differences:
        command.stdout.write("✗ the replay differs from the original:\n")
        for line in differences:
            command.stdout.write(f"    {line}\n")
        raise CommandError(f"the replay of spec {spec.pk} did not come to the same result")
    command.stdout.write(
        f"✓ same result: {after['status']}, {len(after['tickets'])} tickets, the same tool calls and verifications\n"
    )
