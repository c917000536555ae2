"""`omoi replay --spec N`: a finished spec runs again from its stored transcripts, with no API key,
on a fresh clone, and comes to the same result."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from specs.models import Spec
from tests.steering.conftest import loop
from tests.support.steps import drain


@pytest.mark.django_db(transaction=True)
def test_a_completed_spec_replays_to_the_same_result(steering, tmp_path):
    spec = steering.idea({})
    drain()
    assert Spec.objects.get(pk=spec.pk).status == "completed"

    out = io.StringIO()
    call_command("omoi", "replay", "--spec", str(spec.pk), "--script-out", str(tmp_path / "out.json"), stdout=out)

    replay = Spec.objects.exclude(pk=spec.pk).get()
    assert replay.status == "completed" and replay.idea == spec.idea
    assert replay.tickets.count() == spec.tickets.count() == 2
    assert "✓ same result: completed, 2 tickets" in out.getvalue()
    assert (tmp_path / "out.json").exists()


@pytest.mark.django_db(transaction=True)
def test_a_spec_stopped_by_the_guardian_replays_to_the_same_stop(steering):
    spec = steering.idea(
        {"TSK-001:implement_feature": loop({"tool": "read_file", "input": {"path": "textkit/core.py"}})}
    )
    drain()
    assert Spec.objects.get(pk=spec.pk).status == "failed"

    out = io.StringIO()
    call_command("omoi", "replay", "--spec", str(spec.pk), stdout=out)

    replay = Spec.objects.exclude(pk=spec.pk).get()
    assert replay.status == "failed"
    assert replay.tickets.get(spec_task__key="TSK-001").blocked_reason == "stuck"
    assert "✓ same result: failed" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_spec_planned_without_stored_conversations_is_refused(steering):
    spec = steering({})
    drain()

    with pytest.raises(CommandError, match="no stored planning conversation for explore, requirements"):
        call_command("omoi", "replay", "--spec", str(spec.pk))


@pytest.mark.django_db
def test_only_a_finished_spec_can_be_replayed(user, project):
    from tests.factories import SpecFactory

    planning = SpecFactory(project=project, user=user, status="planning")
    with pytest.raises(CommandError, match="only a completed or failed spec can be replayed"):
        call_command("omoi", "replay", "--spec", str(planning.pk))
    with pytest.raises(CommandError, match="there is no spec 999999"):
        call_command("omoi", "replay", "--spec", "999999")
