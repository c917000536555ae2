"""Reconciling requirement and task rows with a phase's output, by stable key.

Each reconcile reads what exists in a fixed number of queries, diffs in memory, and writes with
bulk_create / bulk_update / one delete per table, so its query count does not grow with the
number of rows (on SQLite, Django splits a bulk statement into batches of at most 999 variables;
see docs/planning.md). Reconciling the same output twice changes nothing. A task that was dropped
from the plan but already has a ticket is kept (Ticket.spec_task is RESTRICT): work that began is
never deleted behind the board's back.

Callers hold the transaction (the phase save); these functions do not open their own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef
from django.utils import timezone

from omoi.text import storable_json
from specs.models import (
    Spec,
    SpecAcceptanceCriterion,
    SpecRequirement,
    SpecTask,
    SpecTaskDependency,
    SpecTaskRequirement,
)
from tickets.models import Ticket

REQUIREMENT_FIELDS = ["title", "ears_type", "condition", "action", "text", "priority", "position"]
TASK_FIELDS = [
    "title",
    "description",
    "phase",
    "priority",
    "estimate_hours",
    "files",
    "acceptance_criteria",
    "position",
]


@dataclass
class SyncCounts:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept_with_ticket: list[str] = field(default_factory=list)
    unchanged: int = 0
    links_created: int = 0
    links_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted or self.links_created or self.links_deleted)


def _estimate(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _apply(instance: Any, values: dict[str, Any]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed = True
    return changed


def requirements_reconcile(*, spec: Spec, requirements: list[dict[str, Any]]) -> SyncCounts:
    """Make the spec's requirement and criterion rows match `requirements` (validated
    RequirementOutput dicts, in order)."""
    requirements = storable_json(requirements)
    counts = SyncCounts()
    existing = {row.key: row for row in SpecRequirement.objects.filter(spec=spec)}
    desired_keys = []
    to_create, to_update = [], []
    for position, item in enumerate(requirements):
        key = item["key"]
        desired_keys.append(key)
        values = {
            "title": item["title"],
            "ears_type": item["ears_type"],
            "condition": item.get("condition", ""),
            "action": item["action"],
            "text": item["text"],
            "priority": item.get("priority", "medium"),
            "position": position,
        }
        row = existing.get(key)
        if row is None:
            to_create.append(SpecRequirement(spec=spec, key=key, **values))
            counts.created.append(key)
        elif _apply(row, values):
            to_update.append(row)
            counts.updated.append(key)
        else:
            counts.unchanged += 1
    dropped = [key for key in existing if key not in set(desired_keys)]
    if dropped:
        SpecRequirement.objects.filter(spec=spec, key__in=dropped).delete()
        counts.deleted = dropped
    if to_create:
        SpecRequirement.objects.bulk_create(to_create)
    if to_update:
        now = timezone.now()
        for row in to_update:
            row.updated_at = now
        SpecRequirement.objects.bulk_update(to_update, REQUIREMENT_FIELDS + ["updated_at"])

    by_key = {row.key: row for row in [*existing.values(), *to_create] if row.key not in dropped}
    key_of = {row.pk: row.key for row in by_key.values()}
    criteria = {
        (criterion.requirement_id, criterion.position): criterion
        for criterion in SpecAcceptanceCriterion.objects.filter(requirement__spec=spec)
    }
    criteria_create, criteria_update, wanted = [], [], set()
    for item in requirements:
        requirement = by_key[item["key"]]
        for position, text in enumerate(item["acceptance_criteria"]):
            wanted.add((requirement.pk, position))
            criterion = criteria.get((requirement.pk, position))
            if criterion is None:
                criteria_create.append(SpecAcceptanceCriterion(requirement=requirement, position=position, text=text))
            elif criterion.text != text:
                # A reworded criterion has not been verified in its new wording.
                criterion.text, criterion.verified, criterion.evidence, criterion.verified_at = text, False, {}, None
                criteria_update.append(criterion)
    stale = [c.pk for pair, c in criteria.items() if pair not in wanted and c.requirement_id in key_of]
    if stale:
        SpecAcceptanceCriterion.objects.filter(pk__in=stale).delete()
    if criteria_create:
        SpecAcceptanceCriterion.objects.bulk_create(criteria_create)
    if criteria_update:
        SpecAcceptanceCriterion.objects.bulk_update(criteria_update, ["text", "verified", "evidence", "verified_at"])
    counts.links_created, counts.links_deleted = len(criteria_create), len(stale)
    touched = {c.requirement_id for c in criteria_update} | {c.requirement_id for c in criteria_create}
    stale_ids = set(stale)
    touched |= {c.requirement_id for c in criteria.values() if c.pk in stale_ids}
    for requirement_id in sorted(touched):
        key = key_of[requirement_id]
        if key not in counts.updated and key not in counts.created:
            counts.updated.append(key)
    return counts


def tasks_reconcile(*, spec: Spec, tasks: list[dict[str, Any]]) -> SyncCounts:
    """Make the spec's task rows, dependency links and requirement links match `tasks`
    (validated TaskOutput dicts, in order)."""
    tasks = storable_json(tasks)
    counts = SyncCounts()
    existing = {
        row.key: row
        for row in SpecTask.objects.filter(spec=spec).annotate(
            has_ticket=Exists(Ticket.objects.filter(spec_task=OuterRef("pk")))
        )
    }
    desired_keys = {item["key"] for item in tasks}
    to_create, to_update = [], []
    for position, item in enumerate(tasks):
        values = {
            "title": item["title"],
            "description": item["description"],
            "phase": item.get("phase", "IMPLEMENTATION"),
            "priority": item.get("priority", "medium"),
            "estimate_hours": _estimate(item.get("estimate_hours")),
            "files": list(item.get("files", [])),
            "acceptance_criteria": list(item.get("acceptance_criteria", [])),
            "position": position,
        }
        row = existing.get(item["key"])
        if row is None:
            to_create.append(SpecTask(spec=spec, key=item["key"], **values))
            counts.created.append(item["key"])
        elif _apply(row, values):
            to_update.append(row)
            counts.updated.append(item["key"])
        else:
            counts.unchanged += 1
    dropped = [row for key, row in existing.items() if key not in desired_keys]
    removable = [row.pk for row in dropped if not row.has_ticket]
    counts.deleted = [row.key for row in dropped if not row.has_ticket]
    counts.kept_with_ticket = [row.key for row in dropped if row.has_ticket]
    if removable:
        SpecTask.objects.filter(pk__in=removable).delete()  # their links go with them (CASCADE)
    if to_create:
        SpecTask.objects.bulk_create(to_create)
    if to_update:
        now = timezone.now()
        for row in to_update:
            row.updated_at = now
        SpecTask.objects.bulk_update(to_update, TASK_FIELDS + ["updated_at"])

    task_ids = {row.key: row.pk for row in [*existing.values(), *to_create] if row.key in desired_keys}
    planned_ids = set(task_ids.values())
    requirement_ids = dict(SpecRequirement.objects.filter(spec=spec).values_list("key", "pk"))

    wanted_dependencies = {
        (task_ids[item["key"]], task_ids[key])
        for item in tasks
        for key in item.get("depends_on", [])
        if key in task_ids
    }
    wanted_requirements = {
        (task_ids[item["key"]], requirement_ids[key])
        for item in tasks
        for key in item.get("requirements", [])
        if key in requirement_ids
    }
    created, deleted = _links_reconcile(
        SpecTaskDependency, "depends_on_id", spec=spec, wanted=wanted_dependencies, planned_ids=planned_ids
    )
    counts.links_created += created
    counts.links_deleted += deleted
    created, deleted = _links_reconcile(
        SpecTaskRequirement, "requirement_id", spec=spec, wanted=wanted_requirements, planned_ids=planned_ids
    )
    counts.links_created += created
    counts.links_deleted += deleted
    return counts


def _links_reconcile(model, target: str, *, spec: Spec, wanted: set[tuple[int, int]], planned_ids: set[int]):
    """Links whose task is in the plan are made to equal `wanted`; links of a task kept only for
    its ticket are left as they are."""
    existing = {
        (task_id, target_id): pk
        for pk, task_id, target_id in model.objects.filter(task__spec=spec).values_list("pk", "task_id", target)
    }
    stale = [pk for pair, pk in existing.items() if pair not in wanted and pair[0] in planned_ids]
    missing = [pair for pair in wanted if pair not in existing]
    if stale:
        model.objects.filter(pk__in=stale).delete()
    if missing:
        model.objects.bulk_create(
            [model(task_id=task_id, **{target: target_id}) for task_id, target_id in sorted(missing)]
        )
    return len(missing), len(stale)


def spec_counts(*, spec: Spec) -> dict[str, int]:
    """The planned rows of a spec, for events and summaries."""
    return {
        "requirements": SpecRequirement.objects.filter(spec=spec).count(),
        "criteria": SpecAcceptanceCriterion.objects.filter(requirement__spec=spec).count(),
        "tasks": SpecTask.objects.filter(spec=spec).count(),
        "dependencies": SpecTaskDependency.objects.filter(task__spec=spec).count(),
        "requirement_links": SpecTaskRequirement.objects.filter(task__spec=spec).count(),
    }
