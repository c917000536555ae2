"""A spec's step: the one unit of work that moves a spec, under the spec's lease (kind "spec").

What it does follows from the spec's state, read afresh each time:

    planning                one planning step: a model turn of the phase (or SYNC)
    planning_complete       with approval given (or not required): the bridge
    executing               progress, completion when every ticket is DONE, failure when one is BLOCKED
    completed               the pull request step, until it is done

so a lost message, a killed worker or a duplicate delivery is harmless: the reconciler finds a
spec that should move and has no step, or whose step's lease expired, and the step runs again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q

from omoi.faults import fault_point
from omoi.leases import Held, LeaseLost, WorkKind, lease_claim, work_kind_register
from omoi.models import Lease
from omoi.nodes import node_queue
from omoi.retry import describe_error, is_transient
from sandboxes.models import LIVE_SANDBOX_STATUSES, Sandbox
from sandboxes.services.events import event_record, events_batch
from sandboxes.services.sandbox import SandboxElsewhere
from specs.models import Spec, SpecPhase, SpecStatus
from specs.services.planning import SPEC_KIND, planning_step, spec_transition
from tickets.models import Phase

logger = logging.getLogger(__name__)

S = SpecStatus
BATCH = 500


def spec_route(spec_id: int) -> str:
    """Planning steps go to the node holding the spec's local planning sandbox (else the planning
    queue); the other steps to the default queue."""
    status = Spec.objects.filter(pk=spec_id).values_list("status", flat=True).first()
    if status != S.PLANNING:
        return "default"
    node = (
        Sandbox.objects.filter(spec_id=spec_id, ticket__isnull=True, status__in=LIVE_SANDBOX_STATUSES)
        .exclude(node="")
        .values_list("node", flat=True)
        .first()
    )
    return node_queue(node) if node else "planning"


SPEC_STEP_WORDS = {S.PLANNING_COMPLETE: "bridge", S.EXECUTING: "progress", S.COMPLETED: "pull request"}


def spec_labels(spec_ids: list[int]) -> dict[int, str]:
    """Each spec's next step in words (Flower shows it as the step's arguments): "spec 3 planning
    design", "spec 3 bridge", "spec 3 progress", "spec 3 pull request". One query."""
    rows = Spec.objects.filter(pk__in=spec_ids).values_list("pk", "status", "current_phase")
    return {
        pk: f"spec {pk} " + (f"planning {phase}" if status == S.PLANNING else SPEC_STEP_WORDS.get(status, status))
        for pk, status, phase in rows
    }


def spec_give_up(spec_id: int, error: str) -> None:
    """The spec's step failed too often: the spec fails where it is, with the error (a retry
    resumes it); a completed spec keeps its status and records why its pull request is missing."""
    spec = Spec.objects.get(pk=spec_id)
    if spec.status in (S.PLANNING, S.EXECUTING, S.PLANNING_COMPLETE):
        # The bridge kept failing: the spec fails at EXECUTE, and a retry runs the bridge again.
        phase = SpecPhase.EXECUTE if spec.status == S.PLANNING_COMPLETE else spec.current_phase
        spec_transition(
            spec_id=spec_id,
            status=S.FAILED,
            phase=phase,
            actor="system",
            reason=f"the {phase} step kept failing",
            error=f"the {phase} step kept failing: {error}",
        )
    elif spec.status == S.COMPLETED:
        Spec.objects.filter(pk=spec_id).update(last_error=f"the pull request step kept failing: {error}"[:4000])
        event_record(type="spec.pull_request_failed", payload={"error": error[:2000]}, spec_id=spec_id)


def spec_lock(spec_id: int) -> None:
    Spec.objects.select_for_update(no_key=True).filter(pk=spec_id).values_list("pk", flat=True).first()


def register() -> None:
    work_kind_register(
        WorkKind(
            name=SPEC_KIND,
            task_name="specs.tasks.spec_step_task",
            route=spec_route,
            give_up=spec_give_up,
            lock=spec_lock,
            describe=spec_labels,
        )
    )
    from omoi.reconcile import RULES, Rule

    RULES.append(Rule(name="specs_without_step", find=specs_without_step))


def spec_step(*, spec_id: int) -> str:
    """Run the spec's next step if nobody else runs it. Returns what happened (logs, tests)."""
    held = lease_claim(kind=SPEC_KIND, object_id=spec_id)
    if held is None:
        return "held"
    try:
        with held.heartbeat():
            return _advance(spec_id=spec_id, held=held)
    except LeaseLost:
        return "lost"
    except SandboxElsewhere:
        with transaction.atomic():
            held.finish(more=True)
        return "rerouted"
    except Exception as exc:
        transient = is_transient(exc)
        outcome = held.fail(describe_error(exc), transient=transient)
        (logger.warning if transient else logger.exception)(
            "spec %s: step failed (%s): %s", spec_id, outcome, describe_error(exc)
        )
        return f"failed:{outcome}"
    finally:
        held.release_local()


def _advance(*, spec_id: int, held: Held) -> str:
    from specs.services.bridge import SpecNotExecutable, spec_execute
    from specs.services.completion import pull_request_due, spec_completion_check, spec_pull_request_open

    spec = Spec.objects.select_related("project").get(pk=spec_id)
    if spec.status == S.PLANNING:
        return planning_step(spec=spec, held=held)
    if spec.status == S.PLANNING_COMPLETE and (spec.approved_at or not spec.require_approval):
        try:
            spec_execute(spec_id=spec.pk, actor="system")
        except SpecNotExecutable:
            pass
        fault_point("bridge.committed")
        with transaction.atomic():
            held.finish(more=True)
        return "bridged"
    if spec.status == S.EXECUTING:
        return spec_completion_check(spec_id=spec.pk, held=held)
    if pull_request_due(spec):
        spec_pull_request_open(spec_id=spec.pk, held=held)
        return "pull_request"
    with events_batch():
        held.finish()
    return "idle"


def specs_without_step() -> Iterable[tuple[str, int]]:
    """Specs that should move and have no step: planning; planned and approved (or approval not
    required) but without tickets; executing with every ticket DONE or one BLOCKED; completed
    without their branch pushed or pull request opened."""
    no_lease = ~Exists(Lease.objects.filter(kind=SPEC_KIND, object_id=OuterRef("pk")))
    planning = Q(status=S.PLANNING)
    approved = Q(status=S.PLANNING_COMPLETE) & (Q(approved_at__isnull=False) | Q(require_approval=False))
    executing = Spec.objects.filter(status=S.EXECUTING).annotate(
        total=Count("tickets"),
        done=Count("tickets", filter=Q(tickets__phase=Phase.DONE)),
        blocked=Count("tickets", filter=Q(tickets__phase=Phase.BLOCKED)),
    )
    finished = executing.filter(Q(total__gt=0, done=F("total")) | Q(blocked__gt=0)).values("pk")
    unpushed = Q(status=S.COMPLETED) & (
        Q(branch_pushed_at__isnull=True) | (~Q(project__github_repo="") & Q(pull_request_url=""))
    )
    rows = (
        Spec.objects.filter(no_lease)
        .filter(planning | approved | Q(pk__in=finished) | unpushed)
        .exclude(status=S.COMPLETED, last_error__startswith="the pull request step kept failing")
        .order_by("id")
        .values_list("pk", flat=True)[:BATCH]
    )
    return [(SPEC_KIND, spec_id) for spec_id in rows]
