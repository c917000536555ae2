"""Per-user quotas: launches within a window and unfinished specs, each a 429 with its limit that
writes nothing; other users keep their own."""

import pytest

from specs.models import Spec
from tests.factories import ProjectFactory, SpecFactory

pytestmark = pytest.mark.django_db


def _launch(client, project):
    return client.post("/api/v1/specs/launch", {"project": project.pk, "idea": "Add tags"}, format="json")


def test_launches_past_the_window_quota_are_429_with_the_limit(api, other_api, other_user, notes_project, settings):
    settings.OMOI_QUOTA_LAUNCHES = 2
    settings.OMOI_QUOTA_LAUNCH_WINDOW_S = 600
    settings.OMOI_QUOTA_OPEN_SPECS = 0

    answers = [_launch(api, notes_project).status_code for _ in range(2)]
    refused = _launch(api, notes_project)
    someone_else = _launch(other_api, ProjectFactory(owner=other_user))

    assert answers == [201, 201]
    assert refused.status_code == 429
    body = refused.json()
    assert (body["quota"], body["limit"], body["window_s"]) == ("launches", 2, 600)
    assert body["detail"].startswith("you launched 2 specs in the last 600 seconds")
    assert Spec.objects.filter(project=notes_project).count() == 2
    assert someone_else.status_code == 201


def test_open_specs_past_the_quota_are_429_until_one_finishes(api, user, notes_project, settings):
    settings.OMOI_QUOTA_OPEN_SPECS = 1
    first = _launch(api, notes_project)
    assert first.status_code == 201

    refused = _launch(api, notes_project)
    assert refused.status_code == 429
    assert (refused.json()["quota"], refused.json()["limit"], refused.json()["window_s"]) == ("open_specs", 1, None)
    assert Spec.objects.count() == 1

    assert api.post(f"/api/v1/specs/{first.json()['id']}/cancel").status_code == 200
    assert _launch(api, notes_project).status_code == 201


def test_a_retry_needs_room_for_the_spec_it_reopens(api, user, notes_project, settings):
    settings.OMOI_QUOTA_OPEN_SPECS = 1
    failed = SpecFactory(project=notes_project, user=user, status="failed", current_phase="design")
    SpecFactory(project=notes_project, user=user, status="planning", current_phase="explore")

    refused = api.post(f"/api/v1/specs/{failed.pk}/retry")

    assert refused.status_code == 429
    assert refused.json()["quota"] == "open_specs"
    failed.refresh_from_db()
    assert failed.status == "failed"
    Spec.objects.exclude(pk=failed.pk).update(status="cancelled")
    assert api.post(f"/api/v1/specs/{failed.pk}/retry").status_code == 200


def test_a_retry_that_the_state_forbids_stays_a_409(api, user, notes_project, settings):
    settings.OMOI_QUOTA_OPEN_SPECS = 1
    SpecFactory(project=notes_project, user=user, status="planning")
    completed = SpecFactory(project=notes_project, user=user, status="completed", current_phase="complete")

    assert api.post(f"/api/v1/specs/{completed.pk}/retry").status_code == 409
