"""Where agents run: sandboxes, the conversations (agent runs) held in them, and the event
stream every step writes. Sandboxes know nothing of tickets' workflow; they name the task and
spec they serve only by string reference.
"""

from django.db import models
from django.db.models import Q

from omoi.db import choices_check


class SandboxStatus(models.TextChoices):
    CREATING = "creating", "Creating"
    READY = "ready", "Ready"
    RELEASED = "released", "Released"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost with its worker"


LIVE_SANDBOX_STATUSES = (SandboxStatus.CREATING, SandboxStatus.READY)


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
    ticket = models.ForeignKey(
        "tickets.Ticket", on_delete=models.SET_NULL, null=True, blank=True, related_name="sandboxes"
    )
    task = models.ForeignKey("tickets.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="sandboxes")
    node = models.CharField(
        max_length=200, blank=True, help_text="The worker node whose disk holds a local workspace; empty: any."
    )
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
                fields=["ticket"],
                condition=Q(status__in=["creating", "ready"], ticket__isnull=False),
                name="sandboxes_sandbox_one_live_per_ticket",
                violation_error_message="A ticket has at most one live sandbox.",
            ),
            models.UniqueConstraint(
                fields=["spec"],
                condition=Q(status__in=["creating", "ready"], ticket__isnull=True, spec__isnull=False),
                name="sandboxes_sandbox_one_live_planning_per_spec",
                violation_error_message="A spec's planning has at most one live sandbox.",
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
    message_count = models.PositiveIntegerField(default=0, help_text="Messages in the transcript (AgentMessage rows).")
    base_sha = models.CharField(max_length=64, blank=True, help_text="The commit the run's work started from.")
    pending_tool_results = models.JSONField(
        default=list,
        blank=True,
        help_text="Results of the other tool calls of a turn that called a terminal tool; sent with its reply.",
    )
    turns = models.PositiveIntegerField(default=0)
    verifications = models.PositiveIntegerField(default=0)
    guardian_level = models.PositiveSmallIntegerField(
        default=0, help_text="The guardian's last step: 0 none, 1 nudged, 2 escalated, 3 stopped."
    )
    guardian_turn = models.PositiveIntegerField(default=0, help_text="The turn count at the guardian's last step.")
    guardian_log = models.JSONField(default=list, blank=True, help_text="The guardian's steps and their findings.")
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


class AgentMessage(models.Model):
    """One message of an agent run's transcript, in the Messages API shape ({role, content}). A
    turn appends rows; nothing rewrites the transcript, so a turn's cost does not grow with it."""

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="transcript")
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=16)
    content = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="sandboxes_message_unique_position"),
            models.CheckConstraint(condition=Q(role__in=["user", "assistant"]), name="sandboxes_message_role_valid"),
        ]

    def as_message(self) -> dict:
        return {"role": self.role, "content": self.content}


class QueuedMessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DISCARDED = "discarded", "Discarded"


class QueuedMessage(models.Model):
    """A message for a running agent (an operator's guidance, the guardian's warning): stored as
    pending and delivered exactly once, at the next turn boundary, in the turn's own transaction —
    it joins the last user message of the transcript, where the model saw it. A task's message goes
    to whichever run of the task takes the next turn; a spec's, to its running planning phase."""

    task = models.ForeignKey(
        "tickets.Task", on_delete=models.CASCADE, null=True, blank=True, related_name="queued_messages"
    )
    spec = models.ForeignKey(
        "specs.Spec", on_delete=models.CASCADE, null=True, blank=True, related_name="queued_messages"
    )
    run = models.ForeignKey(
        AgentRun, on_delete=models.CASCADE, null=True, blank=True, related_name="queued_messages",
        help_text="Set for the guardian's messages (to this run) and, for all, once delivered.",
    )  # fmt: skip
    source = models.CharField(max_length=16, default="operator")
    author = models.CharField(max_length=150, blank=True)
    text = models.TextField()
    idempotency_key = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=QueuedMessageStatus.choices, default=QueuedMessageStatus.PENDING)
    delivered_turn = models.PositiveIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            choices_check("status", QueuedMessageStatus),
            models.UniqueConstraint(
                fields=["task", "idempotency_key"],
                condition=Q(task__isnull=False) & ~Q(idempotency_key=""),
                name="sandboxes_message_once_per_task_key",
            ),
            models.UniqueConstraint(
                fields=["spec", "idempotency_key"],
                condition=Q(task__isnull=True, spec__isnull=False) & ~Q(idempotency_key=""),
                name="sandboxes_message_once_per_spec_key",
            ),
        ]
        indexes = [models.Index(fields=["status", "task"], name="sandboxes_queued_pending")]


class GitRef(models.Model):
    """A branch Omoi maintains (a spec branch, a ticket branch) and the commit it points at. The
    database is the truth of where each branch is; a worker's mirror is a cache rebuilt from the
    project's repository plus the GitBundles of the scope (sandboxes/services/gitstore.py)."""

    scope = models.CharField(max_length=200, help_text="Which mirror: spec-<id>-<stamp> or project-<id>-<stamp>.")
    name = models.CharField(max_length=255)
    sha = models.CharField(max_length=64)
    spec = models.ForeignKey("specs.Spec", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "name"]
        constraints = [models.UniqueConstraint(fields=["scope", "name"], name="sandboxes_gitref_unique_name")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.name}@{self.sha[:10]}"


class GitBundle(models.Model):
    """Git objects Omoi made (a task's verified commits, a merge), as a bundle `base..tip`: code
    crosses between sandboxes, workers and the host only as this data, and any worker can rebuild a
    mirror from the project's repository plus these rows."""

    scope = models.CharField(max_length=200)
    tip = models.CharField(max_length=64)
    base = models.CharField(max_length=64, blank=True)
    data = models.BinaryField()
    size = models.PositiveIntegerField(default=0)
    spec = models.ForeignKey("specs.Spec", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["scope", "tip"], name="sandboxes_gitbundle_unique_tip")]


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
