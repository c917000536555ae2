import pytest

from specs.models import Spec
from tests.factories import ProjectFactory, SpecFactory
from tests.support.steps import waiting_steps


def test_the_spec_page_shows_requirements_tasks_and_conversations(admin_client, planned):
    response = admin_client.get(f"/admin/specs/spec/{planned.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    for text in ("REQ-003", "tag_note(99, &#x27;x&#x27;) raises KeyError", "TSK-003", "TSK-001, TSK-002",
                 "Planning conversations", "python -m unittest discover -s tests", "notes.store"):  # fmt: skip
        assert text in page, text
    assert 'name="status"' not in page  # read-only


@pytest.mark.parametrize(
    "url",
    [
        "/admin/specs/spec/",
        "/admin/specs/spec/?status__exact=planning_complete&q=Tags",
        "/admin/specs/specrequirement/",
        "/admin/specs/specacceptancecriterion/",
        "/admin/specs/spectask/",
    ],
)
def test_the_lists_render(admin_client, planned, url):
    response = admin_client.get(url)
    assert response.status_code == 200
    assert "Tags" in response.content.decode() or "REQ-001" in response.content.decode()


def test_requirement_and_task_pages_render_their_links(admin_client, planned):
    requirement = planned.requirements.get(key="REQ-001")
    task = planned.tasks.get(key="TSK-003")

    requirement_page = admin_client.get(f"/admin/specs/specrequirement/{requirement.pk}/change/").content.decode()
    task_page = admin_client.get(f"/admin/specs/spectask/{task.pk}/change/").content.decode()

    assert "A note can carry many tags" in requirement_page
    assert "Covers requirements" in task_page and "REQ-003" in task_page


def test_the_approve_action_calls_the_service(admin_client, planned, capture_sends):
    with capture_sends() as sent:
        response = admin_client.post(
            "/admin/specs/spec/", {"action": "approve", "_selected_action": [planned.pk]}, follow=True
        )

    assert response.status_code == 200
    planned.refresh_from_db()
    assert planned.approved_at is not None and planned.approved_by.username == "admin"
    assert waiting_steps() == [("spec", planned.pk)]
    assert sent == [("specs.tasks.spec_step_task", (planned.pk,), "default")]


def test_an_action_the_state_forbids_is_reported_and_changes_nothing(admin_client, user):
    spec = SpecFactory(project=ProjectFactory(owner=user), status="planning")

    response = admin_client.post("/admin/specs/spec/", {"action": "retry", "_selected_action": [spec.pk]}, follow=True)

    assert f"Spec #{spec.pk} {spec.title}: only a failed spec can be retried; this spec is planning" in (
        response.content.decode()
    )
    assert Spec.objects.get(pk=spec.pk).status == "planning"


def test_cancel_and_retry_actions(admin_client, user):
    planning = SpecFactory(project=ProjectFactory(owner=user), status="planning")
    failed = SpecFactory(project=planning.project, status="failed", current_phase="tasks")

    admin_client.post("/admin/specs/spec/", {"action": "cancel", "_selected_action": [planning.pk]})
    admin_client.post("/admin/specs/spec/", {"action": "retry", "_selected_action": [failed.pk]})

    assert Spec.objects.get(pk=planning.pk).status == "cancelled"
    assert Spec.objects.filter(pk=failed.pk).values_list("status", "current_phase").get() == ("planning", "tasks")
