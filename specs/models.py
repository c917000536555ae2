"""The planning domain: a spec, its EARS requirements with acceptance criteria, and the tasks
its plan breaks into. Requirement and task rows are written as their phases complete (not in a
final batch), keyed by stable keys (REQ-001, TSK-001) so that a re-plan updates them in place.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from omoi.db import choices_check
from tickets.models import Phase, Priority


class SpecStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PLANNING = "planning", "Planning"
    PLANNING_COMPLETE = "planning_complete", "Planning complete"
    EXECUTING = "executing", "Executing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class SpecPhase(models.TextChoices):
    EXPLORE = "explore", "Explore"
    REQUIREMENTS = "requirements", "Requirements"
    DESIGN = "design", "Design"
    TASKS = "tasks", "Tasks"
    SYNC = "sync", "Sync"
    EXECUTE = "execute", "Execute"
    COMPLETE = "complete", "Complete"


class EarsType(models.TextChoices):
    UBIQUITOUS = "ubiquitous", "Ubiquitous"
    EVENT = "event", "Event-driven"
    STATE = "state", "State-driven"
    UNWANTED = "unwanted", "Unwanted behaviour"
    OPTIONAL = "optional", "Optional feature"
    COMPLEX = "complex", "Complex"


class SpecTaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    BLOCKED = "blocked", "Blocked"
    FAILED = "failed", "Failed"


class Spec(models.Model):
    project = models.ForeignKey("tickets.Project", on_delete=models.CASCADE, related_name="specs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="specs")
    title = models.CharField(max_length=500)
    idea = models.TextField()
    status = models.CharField(max_length=32, choices=SpecStatus.choices, default=SpecStatus.DRAFT)
    current_phase = models.CharField(max_length=32, choices=SpecPhase.choices, default=SpecPhase.EXPLORE)
    phase_data = models.JSONField(default=dict, blank=True, help_text="Validated output of each planning phase.")
    phase_attempts = models.JSONField(default=dict, blank=True, help_text="Attempts used per phase.")
    last_error = models.TextField(blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    design = models.JSONField(default=dict, blank=True)
    require_approval = models.BooleanField(default=True)
    budget_usd = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="What the spec's model calls may cost in all; empty: OMOI_SPEC_BUDGET_USD.",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    phase_started_at = models.DateTimeField(null=True, blank=True)
    branch_name = models.CharField(max_length=255, blank=True)
    branch_pushed_at = models.DateTimeField(null=True, blank=True)
    pull_request_url = models.URLField(max_length=1000, blank=True)
    pull_request_number = models.PositiveIntegerField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            choices_check("status", SpecStatus),
            choices_check("current_phase", SpecPhase),
            models.CheckConstraint(condition=Q(progress__lte=100), name="specs_spec_progress_range"),
            models.UniqueConstraint(
                fields=["project", "pull_request_number"],
                condition=Q(pull_request_number__isnull=False),
                name="specs_spec_one_pull_request_number",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status"], name="specs_spec_project_status"),
            models.Index(fields=["status", "updated_at"], name="specs_spec_status_time"),
        ]

    def __str__(self) -> str:
        return self.title


class SpecRequirement(models.Model):
    spec = models.ForeignKey(Spec, on_delete=models.CASCADE, related_name="requirements")
    key = models.CharField(max_length=32)
    title = models.CharField(max_length=500)
    ears_type = models.CharField(max_length=16, choices=EarsType.choices)
    condition = models.TextField(blank=True)
    action = models.TextField()
    text = models.TextField(help_text="The whole EARS sentence.")
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.MEDIUM)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["spec", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["spec", "key"], name="specs_requirement_unique_key"),
            choices_check("ears_type", EarsType),
            choices_check("priority", Priority),
        ]
        # A page of a spec's requirements is read in this order without sorting them all.
        indexes = [models.Index(fields=["spec", "position", "id"], name="specs_requirement_spec_order")]

    def __str__(self) -> str:
        return f"{self.key} {self.title}"


class SpecAcceptanceCriterion(models.Model):
    requirement = models.ForeignKey(SpecRequirement, on_delete=models.CASCADE, related_name="criteria")
    position = models.PositiveIntegerField(default=0)
    text = models.TextField()
    verified = models.BooleanField(default=False)
    evidence = models.JSONField(default=dict, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["requirement", "position", "id"]
        verbose_name_plural = "spec acceptance criteria"
        constraints = [
            models.UniqueConstraint(fields=["requirement", "position"], name="specs_criterion_unique_position"),
        ]

    def __str__(self) -> str:
        return self.text[:80]


class SpecTask(models.Model):
    spec = models.ForeignKey(Spec, on_delete=models.CASCADE, related_name="tasks")
    key = models.CharField(max_length=32)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    phase = models.CharField(max_length=32, choices=Phase.choices, default=Phase.IMPLEMENTATION)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.MEDIUM)
    estimate_hours = models.DecimalField(max_digits=7, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=16, choices=SpecTaskStatus.choices, default=SpecTaskStatus.PENDING)
    files = models.JSONField(default=list, blank=True)
    acceptance_criteria = models.JSONField(default=list, blank=True)
    position = models.PositiveIntegerField(default=0)
    dependencies = models.ManyToManyField(
        "self", through="SpecTaskDependency", symmetrical=False, related_name="dependents", blank=True
    )
    requirements = models.ManyToManyField(
        SpecRequirement, through="SpecTaskRequirement", related_name="tasks", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["spec", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["spec", "key"], name="specs_task_unique_key"),
            choices_check("phase", Phase),
            choices_check("priority", Priority),
            choices_check("status", SpecTaskStatus),
        ]
        # A page of a spec's tasks is read in this order without sorting them all.
        indexes = [models.Index(fields=["spec", "position", "id"], name="specs_task_spec_order")]

    def __str__(self) -> str:
        return f"{self.key} {self.title}"


class SpecTaskDependency(models.Model):
    task = models.ForeignKey(SpecTask, on_delete=models.CASCADE, related_name="dependency_links")
    depends_on = models.ForeignKey(SpecTask, on_delete=models.CASCADE, related_name="dependent_links")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "depends_on"], name="specs_task_dependency_unique"),
            models.CheckConstraint(condition=~Q(task=F("depends_on")), name="specs_task_dependency_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.task.key} depends on {self.depends_on.key}"


class SpecTaskRequirement(models.Model):
    task = models.ForeignKey(SpecTask, on_delete=models.CASCADE, related_name="requirement_links")
    requirement = models.ForeignKey(SpecRequirement, on_delete=models.CASCADE, related_name="task_links")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "requirement"], name="specs_task_requirement_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.task.key} covers {self.requirement.key}"
