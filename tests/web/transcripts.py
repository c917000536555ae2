"""Agent runs with transcripts as test data, in the storage the agent loop uses (AgentMessage rows
and the run's message_count), so the pages read them through sandboxes.selectors.run_transcript as
they read a worker's."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from sandboxes.models import AgentMessage, AgentRun


@transaction.atomic
def transcript_append(run: AgentRun, messages: list[dict[str, Any]]) -> AgentRun:
    """Append `messages` ({role, content}) at the end of the run's transcript."""
    run.refresh_from_db(fields=["message_count"])
    AgentMessage.objects.bulk_create(
        AgentMessage(run=run, position=run.message_count + offset, role=m["role"], content=m["content"])
        for offset, m in enumerate(messages)
    )
    run.message_count += len(messages)
    AgentRun.objects.filter(pk=run.pk).update(message_count=run.message_count)
    return run


def run_with_transcript(*, messages: list[dict[str, Any]], **fields) -> AgentRun:
    """A new AgentRun (`fields` as for AgentRun.objects.create) whose transcript is `messages`."""
    return transcript_append(AgentRun.objects.create(**fields), messages)
