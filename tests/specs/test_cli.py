from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sandboxes.providers.confinement import confinement_probe, confinement_probe_reset
from specs.models import Spec
from tests.factories import ProjectFactory, UserFactory
from tests.support.steps import waiting_steps


def launch(*args):
    out = StringIO()
    call_command("omoi", "launch", *args, stdout=out)
    return out.getvalue()


def test_launch_without_wait_starts_planning_and_says_how_to_follow(db, user, notes_project, capture_sends):
    with capture_sends() as sent:
        output = launch("Add tags to notes", "--project", "notes", "--no-approval", "--title", "Tags")

    spec = Spec.objects.get()
    assert (spec.title, spec.require_approval, spec.user, spec.status) == ("Tags", False, user, "planning")
    assert output.splitlines() == [
        f"Spec #{spec.pk} launched on notes as alice; it executes when planning completes.",
        f"Sandboxes: local: {confinement_probe().describe()}",
        f"A worker plans it; follow with GET /api/v1/specs/{spec.pk}/events?after=0",
    ]
    assert waiting_steps() == [("spec", spec.pk)]
    assert sent == [("specs.tasks.spec_step_task", (spec.pk,), "planning")]


def test_launch_as_a_member_with_user(db, other_user, notes_project):
    notes_project.members.add(other_user)

    launch("Add tags", "--project", "notes", "--user", "bob")

    assert Spec.objects.get().user == other_user


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "nope"], "no project named 'nope'"),
        (["--project", "notes", "--user", "carol"], "no user named 'carol'"),
        (["--project", "notes", "--user", "bob"], "user 'bob' has no project named 'notes'"),
        (["--project", "shared"], "2 projects are named 'shared' (owners: alice, dave); pass --user"),
    ],
)
def test_launch_refuses_what_it_cannot_find(db, user, other_user, notes_project, args, message):
    ProjectFactory(owner=user, name="shared")
    ProjectFactory(owner=UserFactory(username="dave"), name="shared")

    with pytest.raises(CommandError) as error:
        launch("Add tags", *args)

    assert str(error.value) == message
    assert not Spec.objects.exists()


def test_launch_says_when_sandbox_commands_are_not_isolated(db, user, notes_project, settings):
    settings.OMOI_SANDBOX_CONFINEMENT = "none"
    confinement_probe_reset()
    try:
        output = launch("Add tags", "--project", "notes")
    finally:
        confinement_probe_reset()

    assert output.splitlines()[1] == ("Sandboxes: local: commands are NOT isolated: OMOI_SANDBOX_CONFINEMENT is 'none'")
