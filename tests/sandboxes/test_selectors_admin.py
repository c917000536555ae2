import pytest
from django.urls import reverse

from omoi.models import LLMUsage
from sandboxes.models import AgentMessage, AgentRun, AgentRunStatus
from sandboxes.selectors import events_after
from sandboxes.services.agent import agent_run_start
from sandboxes.services.events import event_record
from tests.factories import SpecFactory, UserFactory


@pytest.fixture
def admin_client_logged_in(client):
    admin = UserFactory(username="root-admin", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


@pytest.mark.django_db
def test_events_after_resumes_a_specs_stream_in_order():
    spec, other = SpecFactory(), SpecFactory()
    for number in range(5):
        event_record(type="x.step", payload={"n": number}, spec_id=spec.pk)
    event_record(type="x.other", spec_id=other.pk)

    assert [e.payload["n"] for e in events_after(spec_id=spec.pk)] == [0, 1, 2, 3, 4]
    assert [e.sequence for e in events_after(spec_id=spec.pk, after=2)] == [3, 4, 5]
    assert [e.sequence for e in events_after(spec_id=spec.pk, after=1, limit=2)] == [2, 3]
    assert list(events_after(spec_id=spec.pk, after=5)) == []


@pytest.mark.django_db
def test_events_after_runs_one_query(django_assert_num_queries):
    spec = SpecFactory()
    for _ in range(30):
        event_record(type="x.step", spec_id=spec.pk)

    with django_assert_num_queries(1):
        assert len(list(events_after(spec_id=spec.pk, after=10))) == 20


@pytest.mark.django_db
def test_the_admin_shows_a_runs_transcript_read_only(admin_client_logged_in):
    spec = SpecFactory()
    run = agent_run_start(
        kind="task", spec_id=spec.pk, phase="IMPLEMENTATION", system_prompt="Be careful.", first_message="Do <it>."
    )
    AgentMessage.objects.bulk_create(
        AgentMessage(run=run, position=position, **message)
        for position, message in enumerate(
            [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Reading."},
                        {"type": "tool_use", "id": "tu1", "name": "read_file", "input": {"path": "a.py"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "1\tx", "is_error": False}],
                },
            ],
            start=1,
        )
    )
    AgentRun.objects.filter(pk=run.pk).update(message_count=3)

    page = admin_client_logged_in.get(reverse("admin:sandboxes_agentrun_change", args=[run.pk]))
    listing = admin_client_logged_in.get(reverse("admin:sandboxes_agentrun_changelist"))
    post = admin_client_logged_in.post(reverse("admin:sandboxes_agentrun_change", args=[run.pk]), {"status": "failed"})

    body = page.content.decode()
    assert page.status_code == 200
    assert "=== 2. assistant ===" in body
    assert "→ read_file [tu1]" in body
    assert "Do &lt;it&gt;." in body
    assert listing.status_code == 200
    assert post.status_code == 403
    assert AgentRun.objects.get(pk=run.pk).status == AgentRunStatus.RUNNING


@pytest.mark.django_db
def test_the_admin_cancel_action_goes_through_the_service(admin_client_logged_in):
    spec = SpecFactory()
    run = agent_run_start(kind="task", spec_id=spec.pk, system_prompt="s", first_message="m")

    admin_client_logged_in.post(
        reverse("admin:sandboxes_agentrun_changelist"), {"action": "cancel_runs", "_selected_action": [run.pk]}
    )

    run.refresh_from_db()
    assert (run.status, run.stop_reason) == (AgentRunStatus.CANCELLED, "cancelled in the admin")
    assert spec.events.filter(type="agent.finished").count() == 1


@pytest.mark.django_db
def test_the_event_and_usage_admins_list_filter_and_search(admin_client_logged_in):
    spec = SpecFactory()
    event_record(type="sandbox.refused", payload={"reason": "outside the workspace"}, spec_id=spec.pk)
    event_record(type="agent.turn", payload={"text": "hello"}, spec_id=spec.pk)
    LLMUsage.objects.create(provider="replay", model="replay", spec=spec, phase="explore", input_tokens=10)

    by_type = admin_client_logged_in.get(
        reverse("admin:sandboxes_sandboxevent_changelist"), {"type__exact": "sandbox.refused"}
    )
    by_search = admin_client_logged_in.get(reverse("admin:sandboxes_sandboxevent_changelist"), {"q": "agent.turn"})
    usage = admin_client_logged_in.get(reverse("admin:omoi_llmusage_changelist"), {"phase__exact": "explore"})
    sandboxes = admin_client_logged_in.get(reverse("admin:sandboxes_sandbox_changelist"))

    assert by_type.status_code == by_search.status_code == usage.status_code == sandboxes.status_code == 200
    assert by_type.context["cl"].result_count == 1
    assert by_search.context["cl"].result_count == 1
    assert usage.context["cl"].result_count == 1
