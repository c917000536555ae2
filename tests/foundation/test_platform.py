import json

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from omoi.celery import app as celery_app
from tests.factories import (
    ProjectFactory,
    SpecFactory,
    SpecTaskFactory,
    TaskFactory,
    TicketFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["database"]["ok"] is True
    assert response.json()["broker"]["ok"] is True
    assert client.get("/healthz/").status_code == 200


@pytest.fixture
def stopped_broker(monkeypatch):
    """Point the app at a broker address where nothing listens (Celery reads CELERY_BROKER_URL from
    the environment before its own configuration, so both change)."""
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    saved = {key: celery_app.conf.get(key) for key in ("broker_url", "broker_write_url", "broker_transport")}
    celery_app.conf.update(broker_url="redis://127.0.0.1:1/0", broker_write_url=None, broker_transport=None)
    yield
    celery_app.conf.update(saved)


def test_healthz_reports_a_stopped_broker_as_503(client, stopped_broker):
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False
    assert body["broker"]["detail"]


def test_a_token_comes_from_username_and_password(anonymous_api):
    UserFactory(username="carol", password="right-horse-battery")

    response = anonymous_api.post("/api/v1/auth/token", {"username": "carol", "password": "right-horse-battery"})
    wrong = anonymous_api.post("/api/v1/auth/token/", {"username": "carol", "password": "nope"})

    assert response.status_code == 200
    assert len(response.json()["token"]) == 64
    assert response.json()["expiry"]
    assert wrong.status_code == 400
    assert "Unable to log in" in wrong.json()["detail"]


@pytest.mark.parametrize("path", ["/api/v1/projects", "/api/v1/specs", "/api/v1/tickets", "/api/v1/tasks/"])
def test_unauthenticated_requests_get_401(anonymous_api, path):
    response = anonymous_api.get(path)

    assert response.status_code == 401
    assert response.json()["detail"] == "Authentication credentials were not provided."


def test_the_openapi_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.json"
    call_command("spectacular", "--fail-on-warn", "--validate", "--format", "openapi-json", "--file", str(out))

    schema = json.loads(out.read_text())
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/specs/launch/" in schema["paths"]
    assert "/api/v1/board/view/" in schema["paths"]


def test_swagger_ui_is_served(client):
    assert client.get("/api/docs/").status_code == 200


def _rejects(factory, **fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        factory(**fields)


def test_unknown_vocabulary_values_are_rejected_by_the_database():
    _rejects(TicketFactory, phase="ANALYZING")
    _rejects(TicketFactory, priority="urgent")
    _rejects(TicketFactory, phase="BLOCKED", blocked_reason="")
    _rejects(TaskFactory, status="done")
    _rejects(SpecFactory, status="finished")
    _rejects(SpecFactory, current_phase="review")
    _rejects(SpecFactory, progress=101)
    _rejects(SpecTaskFactory, phase="CODING")


def test_duplicate_keys_and_tasks_are_rejected_by_the_database():
    spec = SpecFactory()
    SpecTaskFactory(spec=spec, key="TSK-001")
    _rejects(SpecTaskFactory, spec=spec, key="TSK-001")

    task = TaskFactory(task_type="implement_feature")
    _rejects(TaskFactory, ticket=task.ticket, phase=task.phase, task_type="implement_feature")

    project = ProjectFactory(name="same")
    _rejects(ProjectFactory, owner=project.owner, name="same")


def test_one_ticket_per_spec_task():
    spec_task = SpecTaskFactory()
    TicketFactory(spec=spec_task.spec, spec_task=spec_task, project=spec_task.spec.project)

    _rejects(TicketFactory, spec=spec_task.spec, spec_task=spec_task, project=spec_task.spec.project)


def test_a_ticket_cannot_depend_on_itself():
    from tickets.models import TicketDependency

    ticket = TicketFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        TicketDependency.objects.create(ticket=ticket, depends_on=ticket)
