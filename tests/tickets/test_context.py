"""Context across phases: aggregation on every move, a bounded summary, and the model summary."""

import json

import pytest

from tests.factories import TaskFactory
from tests.tickets.conftest import make_ticket, satisfy_gate
from tickets.models import Phase, TaskStatus
from tickets.services import tasks_generate, ticket_context_for, ticket_transition
from tickets.services.context import CONTEXT_SUMMARY_LIMIT, context_summary_build, ticket_context_summarize

pytestmark = pytest.mark.django_db


def test_each_move_aggregates_the_finished_phase_for_the_next_phases_tasks(project):
    ticket = make_ticket(project=project, phase=Phase.REQUIREMENTS, title="Export")
    TaskFactory(
        ticket=ticket,
        task_type="analyze_requirements",
        status=TaskStatus.COMPLETED,
        result={"summary": "Users want CSV", "decisions": ["CSV only"], "risks": [{"what": "size"}]},
    )
    satisfy_gate(ticket, Phase.REQUIREMENTS)

    ticket_transition(ticket_id=ticket.pk, to=Phase.DESIGN, actor="system")

    ticket.refresh_from_db()
    entry = ticket.context["REQUIREMENTS"]
    assert entry["summary"] == "analyze_requirements: Users want CSV"
    assert (entry["decisions"], entry["risks"]) == (["CSV only"], ['{"what": "size"}'])
    assert [a["type"] for a in entry["artifacts"]] == ["requirements_doc"]
    assert ticket.context_summary == (
        'REQUIREMENTS:\nanalyze_requirements: Users want CSV\nDecisions: CSV only\nRisks: {"what": "size"}\n'
        "Artifacts: requirements_doc"
    )
    design_task = ticket.tasks.get(phase=Phase.DESIGN)
    assert design_task.description.endswith("Context from earlier phases:\n" + ticket.context_summary)
    given = ticket_context_for(ticket)
    assert (given["ticket"]["title"], given["summary"], given["spec_task"]) == ("Export", ticket.context_summary, None)
    assert list(given["phases"]) == ["REQUIREMENTS"]


def test_the_summary_is_bounded_and_keeps_every_phase():
    huge = {"summary": "x" * 5000, "decisions": ["d" * 3000], "risks": [], "artifacts": []}
    context = {phase: dict(huge) for phase in ["REQUIREMENTS", "DESIGN", "IMPLEMENTATION", "TESTING"]}

    summary = context_summary_build(context)

    assert len(summary) <= CONTEXT_SUMMARY_LIMIT
    assert [line for line in summary.splitlines() if line.endswith(":")] == [
        "REQUIREMENTS:",
        "DESIGN:",
        "IMPLEMENTATION:",
        "TESTING:",
    ]


def test_the_model_summary_is_off_by_default(ticket_in, capture_sends):
    ticket = ticket_in(Phase.DESIGN)
    with capture_sends() as sent:
        ticket_transition(ticket_id=ticket.pk, to=Phase.BLOCKED, actor="a", blocked_reason="other")
    assert [name for name, _args, _queue in sent if "summarize" in name] == []


def test_the_model_rewrites_the_summary_when_configured(ticket_in, settings, tmp_path, capture_sends):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"conversations": {"context_summary": [{"text": "Design blocked on a question."}]}}))
    settings.OMOI_LLM_PROVIDER = "replay"
    settings.OMOI_REPLAY_SCRIPT = str(script)
    settings.OMOI_CONTEXT_SUMMARY_MODEL = True
    ticket = ticket_in(Phase.DESIGN)
    tasks_generate(ticket_id=ticket.pk)

    with capture_sends() as sent:
        ticket_transition(ticket_id=ticket.pk, to=Phase.BLOCKED, actor="a", blocked_reason="other")
    summarize = [args for name, args, _queue in sent if name == "tickets.tasks.ticket_context_summarize_task"]
    assert len(summarize) == 1 and summarize[0][0] == ticket.pk
    ticket.refresh_from_db()
    rule_based = ticket.context_summary
    assert rule_based.startswith("DESIGN:")

    assert ticket_context_summarize(ticket_id=ticket.pk, context_updated_at="2000-01-01T00:00:00+00:00") is False
    assert ticket_context_summarize(ticket_id=ticket.pk, context_updated_at=summarize[0][1]) is True

    ticket.refresh_from_db()
    assert ticket.context_summary == "Design blocked on a question."
    assert ticket.context["DESIGN"]["tasks"][0]["task_type"] == "create_design"


def test_a_model_failure_keeps_the_rule_based_summary(ticket_in, settings, tmp_path):
    settings.OMOI_LLM_PROVIDER = "replay"
    settings.OMOI_REPLAY_SCRIPT = str(tmp_path / "missing.json")
    ticket = ticket_in(Phase.DESIGN)
    ticket_transition(ticket_id=ticket.pk, to=Phase.BLOCKED, actor="a", blocked_reason="other")
    ticket.refresh_from_db()
    before = ticket.context_summary

    assert (
        ticket_context_summarize(ticket_id=ticket.pk, context_updated_at=ticket.context_updated_at.isoformat()) is False
    )
    ticket.refresh_from_db()
    assert ticket.context_summary == before
