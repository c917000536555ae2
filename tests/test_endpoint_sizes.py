"""Endpoints stay flat with size: the same number of queries for 100 and for 10,000 rows, and
answers whose size does not grow with the rows (a spec's detail, the board's columns). The times
are measured by bench/endpoints.py, not here."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from specs.models import Spec
from tests.factories import ProjectFactory
from tests.support.bulk import spec_with_tickets, tickets_of
from tickets.models import Phase, Ticket

pytestmark = pytest.mark.django_db

SMALL, LARGE = 100, 10_000


def _queries(api, url: str) -> tuple[int, dict]:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(url)
    assert response.status_code == 200, response.content[:300]
    return len(captured), response.json()


def spec_of(project, rows: int) -> Spec:
    return spec_with_tickets(project=project, user=project.owner, rows=rows)


def test_a_spec_and_its_pages_cost_the_same_queries_at_100_and_10000_tasks(api, user):
    small, large = spec_of(ProjectFactory(owner=user), SMALL), spec_of(ProjectFactory(owner=user), LARGE)

    for path in ("", "/tasks", "/requirements", "/events"):
        few, small_body = _queries(api, f"/api/v1/specs/{small.pk}{path}")
        many, large_body = _queries(api, f"/api/v1/specs/{large.pk}{path}")
        assert few == many, path

    detail = api.get(f"/api/v1/specs/{large.pk}").json()
    done = Ticket.objects.filter(spec=large, phase=Phase.DONE).count()
    assert (detail["counts"]["tasks"], detail["counts"]["tickets"], detail["counts"]["tickets_done"]) == (
        LARGE,
        LARGE,
        done,
    )
    assert len(api.get(f"/api/v1/specs/{large.pk}").content) < 4000
    page = api.get(f"/api/v1/specs/{large.pk}/tasks?page=3").json()
    assert page["count"] == LARGE
    assert page["results"][0]["key"] == "TSK-00100"
    assert page["results"][0]["depends_on"] == ["TSK-00099"]


def test_the_board_and_the_lists_cost_the_same_queries_at_100_and_10000_tickets(api, user, settings):
    settings.OMOI_BOARD_COLUMN_LIMIT = 25
    small, large = ProjectFactory(owner=user), ProjectFactory(owner=user)
    tickets_of(project=small, rows=SMALL)
    tickets_of(project=large, rows=LARGE)

    for url in ("/api/v1/board/view?project={}", "/api/v1/tickets?project={}"):
        few, _ = _queries(api, url.format(small.pk))
        many, _ = _queries(api, url.format(large.pk))
        assert few == many, url

    board = api.get(f"/api/v1/board/view?project={large.pk}").json()
    assert board["total"] == LARGE
    assert sum(column["count"] for column in board["columns"]) == LARGE
    assert all(len(column["tickets"]) == 25 and column["more"] for column in board["columns"])
    first_backlog = Ticket.objects.filter(project=large, phase=Phase.BACKLOG).order_by("id")[:25]
    assert [t["id"] for t in board["columns"][0]["tickets"]] == [t.pk for t in first_backlog]
    narrow = api.get(f"/api/v1/board/view?project={large.pk}&limit=2").json()
    assert [len(column["tickets"]) for column in narrow["columns"]] == [2] * len(narrow["columns"])


def test_the_spec_list_costs_the_same_queries_at_100_and_10000_specs(api, user):
    small, large = ProjectFactory(owner=user), ProjectFactory(owner=user)
    for project, count in ((small, SMALL), (large, LARGE)):
        Spec.objects.bulk_create(Spec(project=project, user=user, title=f"S{n}", idea="x") for n in range(count))

    few, _ = _queries(api, f"/api/v1/specs?project={small.pk}")
    many, body = _queries(api, f"/api/v1/specs?project={large.pk}")

    assert few == many
    assert body["count"] == LARGE
