"""Schemathesis over the OpenAPI schema: every operation gets a bounded number of generated
requests, valid and invalid, and every answer passes every check (no 5xx, a documented status
code, a body that matches its schema, invalid input refused, authentication enforced). Ids in
valid requests point at real objects half of the time, so the answers that matter (200, 409) are
reached, not only 404s.

OMOI_SCHEMATHESIS_EXAMPLES raises the number of examples per operation and mode for a deeper run.
(Schemathesis's own pytest plugin does not run on pytest 9, so the operations are parametrized
here and each one is driven by Hypothesis with schemathesis's strategies.)
"""

import json
import os

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from knox.models import AuthToken
from schemathesis import GenerationMode
from schemathesis.config._checks import PositiveDataAcceptanceConfig

from omoi.wsgi import application
from tests.conftest import make_git_repository
from tests.factories import ProjectFactory, SpecFactory, SpecRequirementFactory, TaskFactory
from tests.tickets.conftest import make_ticket
from tickets.models import Phase

EXAMPLES = int(os.environ.get("OMOI_SCHEMATHESIS_EXAMPLES", "10"))


def _load_schema():
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = application
    loaded.config.generation.update(max_examples=EXAMPLES)
    # A request can match the schema and still break a rule the schema cannot express (the
    # repository policy, wrong credentials, an empty idea): the API answers 400 with the reason,
    # as every operation documents. Every other check keeps its defaults.
    accepted = loaded.config.checks.positive_data_acceptance.expected_statuses
    loaded.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(expected_statuses=[*accepted, "400"])
    return loaded


SCHEMA = _load_schema()
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture
def in_process_requests(db):
    """Requests reach the WSGI application directly (not through Django's test client), so keep
    Django from closing the test's connection after each request, as the test client does."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(user, other_user, repository_root, settings, in_process_requests):
    """Objects of the requesting user for generated ids to land on, and one of another user."""
    settings.OMOI_REPOSITORY_CHECK_TIMEOUT_S = 5
    repository = make_git_repository(repository_root / "app")
    project = ProjectFactory(owner=user, name="app", repository=str(repository))
    spec = SpecFactory(project=project, user=user, status="planning_complete", current_phase="sync")
    SpecRequirementFactory(spec=spec, key="REQ-001")
    ticket = make_ticket(project=project, phase=Phase.DESIGN, spec=spec)
    task = TaskFactory(ticket=ticket, phase=Phase.DESIGN)
    ProjectFactory(owner=other_user, name="theirs")
    return {"user": user, "ids": {"projects": project.pk, "specs": spec.pk, "tickets": ticket.pk, "tasks": task.pk}}


def _aim_at_real_objects(case, world, mode: GenerationMode) -> None:
    parameters = case.path_parameters or {}
    if mode.is_negative or not isinstance(parameters.get("id"), int) or parameters["id"] % 2:
        return
    collection = case.path.strip("/").split("/")[2]
    parameters["id"] = world["ids"].get(collection, parameters["id"])
    if "key" in parameters:
        parameters["key"] = "REQ-001"


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
def test_the_api_answers_as_its_schema_says(operation, mode, world):
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        _aim_at_real_objects(case, world, mode)
        # Each call carries its own token: logging out revokes only the token of that call.
        token = AuthToken.objects.create(user=world["user"])[1]
        case.call_and_validate(headers={"Authorization": f"Token {token}"})

    run()
