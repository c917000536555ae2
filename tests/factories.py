import factory
from django.contrib.auth import get_user_model

from specs.models import Spec, SpecAcceptanceCriterion, SpecRequirement, SpecTask
from tickets.models import Project, Task, Ticket


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("secret-pass-123")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"project-{n}")
    owner = factory.SubFactory(UserFactory)
    repository = "/tmp/omoi-test-repo"
    default_branch = "main"


class SpecFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Spec

    project = factory.SubFactory(ProjectFactory)
    user = factory.LazyAttribute(lambda s: s.project.owner)
    title = factory.Sequence(lambda n: f"Spec {n}")
    idea = "Add a feature"


class SpecRequirementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SpecRequirement

    spec = factory.SubFactory(SpecFactory)
    key = factory.Sequence(lambda n: f"REQ-{n + 1:03d}")
    title = "A requirement"
    ears_type = "ubiquitous"
    action = "respond"
    text = "The system shall respond."


class SpecAcceptanceCriterionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SpecAcceptanceCriterion

    requirement = factory.SubFactory(SpecRequirementFactory)
    position = factory.Sequence(lambda n: n)
    text = "It responds."


class SpecTaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SpecTask

    spec = factory.SubFactory(SpecFactory)
    key = factory.Sequence(lambda n: f"TSK-{n + 1:03d}")
    title = "A task"
    description = "Do the thing."


class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ticket

    project = factory.SubFactory(ProjectFactory)
    user = factory.LazyAttribute(lambda t: t.project.owner)
    title = factory.Sequence(lambda n: f"Ticket {n}")


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    ticket = factory.SubFactory(TicketFactory)
    phase = factory.LazyAttribute(lambda t: t.ticket.phase)
    task_type = factory.Sequence(lambda n: f"task_type_{n}")
    title = "A task"
