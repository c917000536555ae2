"""The execution domain: projects, tickets on the board, the tasks agents carry out, and the
records of how tickets moved (history, gate artifacts, gate results).

Every vocabulary is a TextChoices defined once here, and every column that stores one has a
CheckConstraint. Workflow lives in tickets/services, never in save() or signals.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from omoi.db import choices_check
from tickets.validators import validate_shell_command


class Phase(models.TextChoices):
    BACKLOG = "BACKLOG", "Backlog"
    REQUIREMENTS = "REQUIREMENTS", "Requirements"
    DESIGN = "DESIGN", "Design"
    IMPLEMENTATION = "IMPLEMENTATION", "Implementation"
    TESTING = "TESTING", "Testing"
    DEPLOYMENT = "DEPLOYMENT", "Deployment"
    DONE = "DONE", "Done"
    BLOCKED = "BLOCKED", "Blocked"


class Priority(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class BlockedReason(models.TextChoices):
    DEPENDENCY = "dependency", "Waiting on a dependency"
    CLARIFICATION_NEEDED = "clarification_needed", "Clarification needed"
    FAILING_CHECKS = "failing_checks", "Failing checks"
    ENVIRONMENT = "environment", "Environment problem"
    BUDGET = "budget", "Budget exhausted"
    TURN_LIMIT = "turn_limit", "Turn or time limit reached"
    STUCK = "stuck", "Stuck (stopped by the guardian)"
    MERGE_CONFLICT = "merge_conflict", "Merge conflict"
    OTHER = "other", "Other"


class Executor(models.TextChoices):
    """Who carries a task out: a model run in a sandbox, or the host itself (running the tests,
    merging)."""

    AGENT = "agent", "Agent"
    HOST = "host", "Host"


class GateStatus(models.TextChoices):
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    PENDING = "pending", "Pending"


class Project(models.Model):
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="projects", blank=True)
    repository = models.CharField(max_length=1000, help_text="A local git path or a clone URL.")
    default_branch = models.CharField(max_length=255, default="main")
    github_repo = models.CharField(max_length=200, blank=True, help_text='"owner/name" on GitHub, optional.')
    test_command = models.CharField(max_length=1000, blank=True, validators=[validate_shell_command])
    setup_command = models.CharField(
        max_length=1000,
        blank=True,
        validators=[validate_shell_command],
        help_text="Run once per sandbox, with network access, before the agent's first turn "
        "(for example `pip install -e '.[test]'` or `npm ci`).",
    )
    network_allowed = models.BooleanField(
        default=False,
        help_text="Let every command of this project's sandboxes use the network (by default only the "
        "setup command may).",
    )
    # The project's own GitHub token, encrypted (omoi.secrets); it replaces GITHUB_TOKEN for this
    # project and is never shown again once stored.
    github_token_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="tickets_project_unique_owner_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tickets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tickets")
    spec = models.ForeignKey("specs.Spec", on_delete=models.CASCADE, null=True, blank=True, related_name="tickets")
    # RESTRICT: a planned task that has a ticket cannot be dropped, unless its whole spec goes.
    spec_task = models.OneToOneField(
        "specs.SpecTask", on_delete=models.RESTRICT, null=True, blank=True, related_name="ticket"
    )
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    phase = models.CharField(max_length=32, choices=Phase.choices, default=Phase.BACKLOG)
    previous_phase = models.CharField(max_length=32, choices=Phase.choices, blank=True)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.MEDIUM)
    blocked_reason = models.CharField(max_length=32, choices=BlockedReason.choices, blank=True)
    blocked_message = models.TextField(blank=True)
    context = models.JSONField(default=dict, blank=True)
    context_summary = models.TextField(blank=True)
    context_updated_at = models.DateTimeField(null=True, blank=True)
    dependencies = models.ManyToManyField(
        "self", through="TicketDependency", symmetrical=False, related_name="dependents", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            choices_check("phase", Phase),
            choices_check("previous_phase", Phase, blank=True),
            choices_check("priority", Priority),
            choices_check("blocked_reason", BlockedReason, blank=True),
            models.CheckConstraint(
                condition=(Q(phase=Phase.BLOCKED) & ~Q(blocked_reason=""))
                | (~Q(phase=Phase.BLOCKED) & Q(blocked_reason="")),
                name="tickets_ticket_blocked_has_reason",
            ),
        ]
        indexes = [
            # The board reads each column's first tickets in id order straight from this index.
            models.Index(fields=["project", "phase", "id"], name="tickets_ticket_project_column"),
            models.Index(fields=["spec", "phase"], name="tickets_ticket_spec_phase"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class TicketDependency(models.Model):
    """`ticket` may not start until `depends_on` is DONE."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="dependency_links")
    depends_on = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="dependent_links")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ticket", "depends_on"], name="tickets_dependency_unique"),
            models.CheckConstraint(condition=~Q(ticket=F("depends_on")), name="tickets_dependency_not_self"),
        ]

    def __str__(self) -> str:
        return f"#{self.ticket_id} waits for #{self.depends_on_id}"


class Task(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="tasks")
    phase = models.CharField(max_length=32, choices=Phase.choices)
    task_type = models.CharField(max_length=64, help_text="The template this task was made from.")
    executor = models.CharField(max_length=16, choices=Executor.choices, default=Executor.AGENT)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.MEDIUM)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            choices_check("phase", Phase),
            choices_check("priority", Priority),
            choices_check("status", TaskStatus),
            choices_check("executor", Executor),
            models.UniqueConstraint(fields=["ticket", "phase", "task_type"], name="tickets_task_once_per_template"),
        ]
        indexes = [
            models.Index(fields=["ticket", "phase", "status"], name="tickets_task_ticket_phase"),
            models.Index(fields=["status", "updated_at"], name="tickets_task_status_time"),
        ]

    def __str__(self) -> str:
        return f"{self.task_type} ({self.phase}) of ticket {self.ticket_id}"


class PhaseHistory(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="history")
    from_phase = models.CharField(max_length=32, choices=Phase.choices, blank=True)
    to_phase = models.CharField(max_length=32, choices=Phase.choices)
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=255)
    artifacts = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "phase history"
        constraints = [
            choices_check("from_phase", Phase, blank=True),
            choices_check("to_phase", Phase),
        ]

    def __str__(self) -> str:
        return f"{self.from_phase or 'new'} → {self.to_phase} by {self.actor}"


class PhaseGateArtifact(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="artifacts")
    phase = models.CharField(max_length=32, choices=Phase.choices)
    artifact_type = models.CharField(max_length=64)
    path = models.CharField(max_length=1000, blank=True)
    content = models.JSONField(default=dict, blank=True)
    collected_by = models.CharField(max_length=255)
    collected_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [choices_check("phase", Phase)]
        indexes = [models.Index(fields=["ticket", "phase"], name="tickets_artifact_phase")]

    def __str__(self) -> str:
        return f"{self.artifact_type} ({self.phase})"


class PhaseGateResult(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="gate_results")
    phase = models.CharField(max_length=32, choices=Phase.choices)
    status = models.CharField(max_length=16, choices=GateStatus.choices)
    blocking_reasons = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True)
    validated_by = models.CharField(max_length=255)
    validated_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [choices_check("phase", Phase), choices_check("status", GateStatus)]
        indexes = [models.Index(fields=["ticket", "phase"], name="tickets_gate_ticket_phase")]

    def __str__(self) -> str:
        return f"{self.phase} gate {self.status}"
