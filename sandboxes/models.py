"""Where agents run: sandboxes, the conversations (agent runs) held in them, and the event
stream every step writes. Sandboxes know nothing of tickets' workflow; they name the task and
spec they serve only by string reference.
"""

from django.db import models
from django.db.models import Q

from tickets.models import choices_check


class SandboxStatus(models.TextChoices):
    CREATING = "creating", "Creating"
    READY = "ready", "Ready"
    RELEASED = "released", "Released"
    FAILED = "failed", "Failed"


class AgentRunKind(models.TextChoices):
    PLANNING = "planning", "Planning phase"
    TASK = "task", "Task execution"


class AgentRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    VERIFYING = "verifying", "Verifying"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Sandbox(models.Model):
    provider = models.CharField(max_length=32)
    external_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=SandboxStatus.choices, default=SandboxStatus.CREATING)
    spec = models.ForeignKey("specs.Spec", on_delete=models.SET_NULL, null=True, blank=True, related_name="sandboxes")
    task = models.ForeignKey("tickets.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="sandboxes")
    workspace_path = models.CharField(max_length=1000, blank=True)
    branch = models.CharField(max_length=255, blank=True)
    base_branch = models.CharField(max_length=255, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            choices_check("status", SandboxStatus),
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=~Q(external_id=""),
                name="sandboxes_sandbox_unique_external",
            ),
            models.UniqueConstraint(
                fields=["task"],
                condition=Q(status__in=["creating", "ready"]),
                name="sandboxes_sandbox_one_live_per_task",
                violation_error_message="A task has at most one live sandbox.",
            ),
        ]
        indexes = [models.Index(fields=["status", "last_activity_at"], name="sandboxes_sbx_status_activity")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.external_id or self.pk}"


class AgentRun(models.Model):
    """One model conversation: a planning phase or a task's execution. The transcript (messages
    in the Messages API shape) lives here, so a run proceeds one turn per Celery task and a crash
    repeats at most one turn."""

    kind = models.CharField(max_length=16, choices=AgentRunKind.choices)
    spec = models.ForeignKey("specs.Spec", on_delete=models.CASCADE, null=True, blank=True, related_name="agent_runs")
    task = models.ForeignKey("tickets.Task", on_delete=models.CASCADE, null=True, blank=True, related_name="agent_runs")
    phase = models.CharField(max_length=32, blank=True, help_text="The planning phase or ticket phase.")
    sandbox = models.ForeignKey(Sandbox, on_delete=models.SET_NULL, null=True, blank=True, related_name="agent_runs")
    status = models.CharField(max_length=16, choices=AgentRunStatus.choices, default=AgentRunStatus.RUNNING)
    system_prompt = models.TextField(blank=True)
    messages = models.JSONField(default=list, blank=True)
    pending_tool_results = models.JSONField(
        default=list,
        blank=True,
        help_text="Results of the other tool calls of a turn that called a terminal tool; sent with its reply.",
    )
    turns = models.PositiveIntegerField(default=0)
    verifications = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    stop_reason = models.CharField(max_length=255, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [choices_check("kind", AgentRunKind), choices_check("status", AgentRunStatus)]
        indexes = [
            models.Index(fields=["spec", "phase"], name="sandboxes_run_spec_phase"),
            models.Index(fields=["status", "updated_at"], name="sandboxes_run_status_time"),
        ]

    def __str__(self) -> str:
        what = f"{self.phase} " if self.phase else ""
        return f"{what}run {self.pk} ({self.get_status_display().lower()}, {self.turns} turns)"


class EventCounter(models.Model):
    """The last sequence number handed out for a spec's event stream. Incrementing it locks the
    row, which serialises event writers per spec and keeps sequences gap-free and ordered."""

    spec = models.OneToOneField("specs.Spec", on_delete=models.CASCADE, primary_key=True, related_name="+")
    last_sequence = models.PositiveBigIntegerField(default=0)


class SandboxEvent(models.Model):
    sandbox = models.ForeignKey(Sandbox, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    spec = models.ForeignKey("specs.Spec", on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    ticket = models.ForeignKey(
        "tickets.Ticket", on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    task = models.ForeignKey("tickets.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    type = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    sequence = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["spec", "sequence"], name="sandboxes_event_unique_sequence"),
            models.CheckConstraint(
                condition=Q(spec__isnull=True) | Q(sequence__isnull=False), name="sandboxes_event_spec_has_sequence"
            ),
        ]
        indexes = [
            models.Index(fields=["ticket", "id"], name="sandboxes_event_ticket"),
            models.Index(fields=["type", "created_at"], name="sandboxes_event_type_time"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.sequence}"
