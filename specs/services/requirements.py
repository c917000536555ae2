"""Editing a planned requirement. The requirement rows are the truth once REQUIREMENTS is done;
an edit is validated like the model's output (schema and EARS shape), written to the row and its
criteria, and mirrored into phase_data, so a re-plan (DESIGN and TASKS again) plans against it."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from pydantic import ValidationError

from sandboxes.services.events import event_record
from specs.models import Spec, SpecPhase, SpecRequirement, SpecStatus
from specs.prompts import requirement_dicts
from specs.schemas import RequirementOutput
from specs.services import sync
from specs.services.planning import SpecConflict
from specs.validation import requirement_problems, schema_problems

EDITABLE_FIELDS = ("title", "ears_type", "text", "condition", "action", "priority", "acceptance_criteria")
EDITABLE_STATUSES = (SpecStatus.PLANNING_COMPLETE, SpecStatus.FAILED)


class RequirementInvalid(Exception):
    """The edited requirement does not validate; `problems` says exactly why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@transaction.atomic
def spec_requirement_update(*, spec_id: int, key: str, user, changes: dict[str, Any]) -> SpecRequirement:
    """Change a requirement of a planned (or failed) spec; follow with a re-plan to carry the
    change into the design and the tasks. Raises SpecRequirement.DoesNotExist for an unknown key."""
    spec = Spec.objects.select_for_update().get(pk=spec_id)
    if spec.status not in EDITABLE_STATUSES:
        raise SpecConflict(
            f"requirements can be edited when planning is complete or has failed; this spec is {spec.status}"
        )
    current = requirement_dicts(spec)
    index = next((i for i, item in enumerate(current) if item["key"] == key), None)
    if index is None:
        raise SpecRequirement.DoesNotExist(f"spec {spec_id} has no requirement {key}")
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise RequirementInvalid([f"{name}: this field cannot be edited" for name in unknown])
    merged = {**current[index], **changes}
    try:
        item = RequirementOutput.model_validate(merged)
    except ValidationError as error:
        raise RequirementInvalid(schema_problems(error, merged)) from error
    problems = requirement_problems(item)
    if problems:
        raise RequirementInvalid(problems)

    edited = item.model_dump(mode="json")
    changed = [name for name in EDITABLE_FIELDS if current[index][name] != edited[name]]
    requirements = [*current[:index], edited, *current[index + 1 :]]
    sync.requirements_reconcile(spec=spec, requirements=requirements)
    spec.phase_data = {**spec.phase_data, SpecPhase.REQUIREMENTS: {"requirements": requirements}}
    spec.save(update_fields=["phase_data", "updated_at"])
    event_record(
        type="spec.requirement_updated",
        payload={"key": key, "fields": changed, "actor": getattr(user, "username", "") or "system"},
        spec_id=spec.pk,
    )
    return SpecRequirement.objects.prefetch_related("criteria").get(spec=spec, key=key)
