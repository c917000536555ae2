"""A message to the planning agent while a phase runs reaches that phase's conversation once."""

from __future__ import annotations

import pytest

from sandboxes.models import AgentRun, QueuedMessage
from specs.models import Spec
from tests.support.steps import drain


@pytest.mark.django_db(transaction=True)
def test_a_planning_message_reaches_the_running_phase_once(db, user, notes_project, use_script, api):
    from specs.services.planning import spec_launch
    from tests.specs.scripts import IDEA

    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA, title="Tags")

    response = api.post(f"/api/v1/specs/{spec.pk}/messages", {"text": "Keep tags lower-case."}, format="json")
    assert response.status_code == 201, response.json()
    drain()

    explore = AgentRun.objects.get(spec=spec, kind="planning", phase="explore")
    transcript = str(list(explore.transcript.values_list("content", flat=True)))
    assert transcript.count("Keep tags lower-case.") == 1
    assert QueuedMessage.objects.get(spec=spec).delivered_turn == 1
    assert Spec.objects.get(pk=spec.pk).status == "planning_complete"
    late = api.post(f"/api/v1/specs/{spec.pk}/messages", {"text": "too late"}, format="json")
    assert late.status_code == 409
