"""Text that cannot be stored: a request holding it gets a 400 with the reason (never a 500), and
text from a command or a model is made storable at the boundary instead of stranding the work."""

import json

import pytest

from omoi.text import REPLACEMENT, storable, storable_json, unstorable_reason
from tests.factories import SpecFactory, SpecRequirementFactory
from tests.tickets.conftest import make_ticket
from tickets.models import Phase, PhaseGateArtifact
from tickets.services.gates import artifact_collect

pytestmark = pytest.mark.django_db


def _raw_post(api, url: str, text: str):
    """POST a JSON text exactly as written (escapes such as \\u0000 and \\udfff included)."""
    return api.generic("POST", url, text.encode(), content_type="application/json")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"artifact_type": "notes", "content": {"text": "a\\u0000b"}}', "content.text contains a NUL character"),
        ('{"artifact_type": "notes", "content": {"a\\u0000b": 1}}', "a key in content contains a NUL character"),
        ('{"artifact_type": "notes", "content": {"text": "\\udfff"}}', "content.text contains a lone surrogate"),
        ('{"artifact_type": "notes", "content": {"list": ["ok", "\\ud800"]}}', "content.list[1] contains a lone"),
        ('{"artifact_type": "no\\u0000tes", "content": {}}', "artifact_type contains a NUL character"),
        ('{"artifact_type": "notes", "content": {"n": 1e999}}', "content.n is inf"),
    ],
)
def test_unstorable_text_in_a_body_is_a_400_with_the_reason(api, project, body, reason):
    ticket = make_ticket(project=project, phase=Phase.DESIGN)

    response = _raw_post(api, f"/api/v1/tickets/{ticket.pk}/artifacts", body)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON body: ")
    assert reason in response.json()["detail"]
    assert not PhaseGateArtifact.objects.exists()


def test_a_nul_in_a_path_is_a_400(api, project):
    spec = SpecFactory(project=project)
    SpecRequirementFactory(spec=spec, key="REQ-001")

    patched = api.patch(f"/api/v1/specs/{spec.pk}/requirements/REQ%00", {"title": "x"}, format="json")
    fetched = api.get("/api/v1/projects/1%00")

    for response in (patched, fetched):
        assert response.status_code == 400
        assert response.json()["detail"] == "the path contains a NUL character (\\u0000), which cannot be stored"


@pytest.mark.parametrize(
    "query",
    ["?project=%C2%B9", "?project=%00", "?project=1%00", "?project=%EF%BC%91"],
)
def test_a_query_the_database_cannot_use_is_a_400(api, project, query):
    response = api.get(f"/api/v1/board/view{query}")
    assert response.status_code == 400
    assert "project" in response.json()["detail"]


def test_a_body_over_the_limit_is_a_413(api, project, settings):
    settings.OMOI_API_MAX_BODY_BYTES = 1000
    ticket = make_ticket(project=project, phase=Phase.DESIGN)

    response = api.post(
        f"/api/v1/tickets/{ticket.pk}/artifacts", {"artifact_type": "x", "content": {"t": "a" * 2000}}, format="json"
    )

    assert response.status_code == 413
    assert response.json()["detail"] == "the request body is larger than 1000 bytes"


def test_evidence_from_a_command_is_stored_with_its_unstorable_characters_replaced(project):
    ticket = make_ticket(project=project, phase=Phase.IMPLEMENTATION)
    output = "binary \x00\x01 and a lone \udfff surrogate"

    artifact = artifact_collect(
        ticket_id=ticket.pk,
        artifact_type="test_results",
        content={"output_tail": output, "bad\x00key": [output], "nan": float("nan")},
        collected_by="host",
    )

    artifact.refresh_from_db()
    assert artifact.content == {
        "output_tail": f"binary {REPLACEMENT}\x01 and a lone {REPLACEMENT} surrogate",
        f"bad{REPLACEMENT}key": [f"binary {REPLACEMENT}\x01 and a lone {REPLACEMENT} surrogate"],
        "nan": None,
    }


def test_storable_caps_sizes_and_says_how_much_was_cut():
    assert storable("a\x00b") == f"a{REPLACEMENT}b"
    assert storable("x" * 10, 4) == "xxxx\n… [6 more characters]"
    assert storable_json({"k": ["y" * 5]}, 2) == {"k": ["yy\n… [3 more characters]"]}
    assert storable_json({1: (1.5, True, None)}) == {"1": [1.5, True, None]}
    json.dumps(storable_json({"\udfff": "\ud800"}), ensure_ascii=False).encode()  # encodes as UTF-8


def test_unstorable_reason_names_the_place():
    assert unstorable_reason({"a": [{"b": "ok"}, {"c": "\x00"}]}) == (
        "a[1].c contains a NUL character (\\u0000), which cannot be stored"
    )
    assert unstorable_reason({"fine": ["text", 1, 2.5, None]}) is None
