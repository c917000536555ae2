"""Reads of the sandboxes app."""

from django.db.models import Max, QuerySet

from sandboxes.models import AgentMessage, SandboxEvent

EVENTS_PAGE_LIMIT = 500


def events_after(*, spec_id: int, after: int = 0, limit: int = EVENTS_PAGE_LIMIT) -> QuerySet[SandboxEvent]:
    """A spec's events with a sequence above `after`, in sequence order, at most `limit`
    (capped at 500): a client resumes its stream by passing the last sequence it saw."""
    limit = max(1, min(int(limit), EVENTS_PAGE_LIMIT))
    return SandboxEvent.objects.filter(spec_id=spec_id, sequence__gt=max(int(after), 0)).order_by("sequence")[:limit]


def last_sequence(*, spec_id: int) -> int:
    """The sequence of the spec's latest event (0 before the first)."""
    found = SandboxEvent.objects.filter(spec_id=spec_id).aggregate(last=Max("sequence"))["last"]
    return found or 0


def run_transcript(*, run) -> list[dict]:
    """An agent run's transcript as Messages API messages ({role, content}), oldest first. Read it
    through this function only: where the transcript is stored is the agent loop's business."""
    rows = AgentMessage.objects.filter(run_id=run.pk).order_by("position").values_list("role", "content")
    return [{"role": role, "content": content} for role, content in rows]
