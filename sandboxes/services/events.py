"""The event stream. Every step of planning and execution records an event here; a client
resumes a spec's stream with `after=N` because sequences grow by one per spec, with no gaps.

Call `event_record` inside the transaction that made the change it describes, so that an event
exists exactly when its change does.
"""

from typing import Any

from django.db import transaction
from django.db.models import F

from sandboxes.models import EventCounter, SandboxEvent

PAYLOAD_TEXT_LIMIT = 4000


def truncate_text(text: str, limit: int = PAYLOAD_TEXT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit} more characters]"


@transaction.atomic
def event_record(
    *,
    type: str,
    payload: dict[str, Any] | None = None,
    spec_id: int | None = None,
    ticket_id: int | None = None,
    task_id: int | None = None,
    sandbox_id: int | None = None,
) -> SandboxEvent:
    sequence = None
    if spec_id is not None:
        EventCounter.objects.get_or_create(spec_id=spec_id)
        EventCounter.objects.filter(spec_id=spec_id).update(last_sequence=F("last_sequence") + 1)
        sequence = EventCounter.objects.values_list("last_sequence", flat=True).get(spec_id=spec_id)
    return SandboxEvent.objects.create(
        type=type,
        payload=payload or {},
        spec_id=spec_id,
        ticket_id=ticket_id,
        task_id=task_id,
        sandbox_id=sandbox_id,
        sequence=sequence,
    )
