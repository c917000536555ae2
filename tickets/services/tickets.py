"""Creating projects and tickets, and linking tickets by dependency."""

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from omoi.secrets import secret_encrypt
from omoi.text import storable
from sandboxes.services.events import event_record
from tickets.errors import InvalidDependency, ProjectNameTaken
from tickets.models import Phase, PhaseHistory, Priority, Project, Ticket, TicketDependency

# Leaves room for the truncation note within the column's 500 characters.
TITLE_LIMIT = 460


@transaction.atomic
def project_create(
    *,
    owner,
    name: str,
    repository: str,
    default_branch: str = "main",
    github_repo: str = "",
    test_command: str = "",
    setup_command: str = "",
    network_allowed: bool = False,
    github_token: str = "",
) -> Project:
    """A project owned by `owner`. The repository must already have passed the repository policy
    (tickets.repository_policy.repository_accept: the API, the admin and the CLI all call it);
    a GitHub token of its own is stored encrypted."""
    if Project.objects.filter(owner=owner, name=name).exists():
        raise ProjectNameTaken(f"you already have a project named {name!r}")
    try:
        with transaction.atomic():
            return Project.objects.create(
                owner=owner,
                name=name,
                repository=repository,
                default_branch=default_branch or "main",
                github_repo=github_repo,
                test_command=test_command,
                setup_command=setup_command,
                network_allowed=network_allowed,
                github_token_encrypted=secret_encrypt(github_token.strip()),
            )
    except IntegrityError as exc:  # a concurrent create of the same name won
        raise ProjectNameTaken(f"you already have a project named {name!r}") from exc


def _would_cycle(*, ticket_id: int, depends_on_id: int) -> bool:
    """Whether `ticket` is already (transitively) a dependency of `depends_on`."""
    frontier, seen = {depends_on_id}, set()
    while frontier:
        if ticket_id in frontier:
            return True
        seen |= frontier
        frontier = (
            set(TicketDependency.objects.filter(ticket_id__in=frontier).values_list("depends_on_id", flat=True)) - seen
        )
    return False


@transaction.atomic
def ticket_dependency_add(*, ticket_id: int, depends_on_id: int) -> TicketDependency:
    """`ticket` may not start its work until `depends_on` is DONE. Both in one project, no cycles;
    adding an existing dependency again changes nothing."""
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket_id)
    depends_on = Ticket.objects.filter(pk=depends_on_id).first()
    if depends_on is None:
        raise InvalidDependency(f"ticket #{depends_on_id} does not exist")
    if depends_on.pk == ticket.pk:
        raise InvalidDependency("a ticket cannot depend on itself")
    if depends_on.project_id != ticket.project_id:
        raise InvalidDependency(f"ticket #{depends_on.pk} belongs to another project")
    if _would_cycle(ticket_id=ticket.pk, depends_on_id=depends_on.pk):
        raise InvalidDependency(
            f"ticket #{depends_on.pk} already depends on ticket #{ticket.pk}; that would be a cycle"
        )
    link, _ = TicketDependency.objects.get_or_create(ticket=ticket, depends_on=depends_on)
    return link


@transaction.atomic
def ticket_create(
    *,
    project_id: int,
    user,
    title: str,
    actor: str,
    description: str = "",
    priority: Priority | str = Priority.MEDIUM,
    dependency_ids: Iterable[int] = (),
    spec_id: int | None = None,
    spec_task_id: int | None = None,
) -> Ticket:
    """A new ticket in BACKLOG, with its creation in PhaseHistory and a `ticket.created` event.
    A ticket for a SpecTask is made once: asking again returns the existing ticket unchanged."""
    if spec_task_id is not None:
        existing = Ticket.objects.filter(spec_task_id=spec_task_id).first()
        if existing is not None:
            return existing
    if not title or not title.strip():
        raise ValueError("a ticket needs a title")
    if priority not in Priority.values:
        raise ValueError(f"unknown priority {priority!r}; use one of {', '.join(Priority.values)}")
    ticket = Ticket.objects.create(
        project_id=project_id,
        user=user,
        title=storable(title.strip(), TITLE_LIMIT),
        description=storable(description),
        priority=priority,
        spec_id=spec_id,
        spec_task_id=spec_task_id,
        phase=Phase.BACKLOG,
    )
    for depends_on_id in dict.fromkeys(dependency_ids):
        ticket_dependency_add(ticket_id=ticket.pk, depends_on_id=depends_on_id)
    PhaseHistory.objects.create(ticket=ticket, from_phase="", to_phase=Phase.BACKLOG, reason="created", actor=actor)
    event_record(
        type="ticket.created",
        payload={"title": ticket.title, "actor": actor, "dependencies": list(dict.fromkeys(dependency_ids))},
        spec_id=ticket.spec_id,
        ticket_id=ticket.pk,
    )
    return ticket
