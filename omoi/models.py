"""Records kept by the clients in omoi/ that no single app owns."""

from django.db import models


class LLMUsage(models.Model):
    """The token usage of one model call, with what it was for and what it is estimated to cost."""

    spec = models.ForeignKey("specs.Spec", on_delete=models.SET_NULL, null=True, blank=True, related_name="llm_usage")
    task = models.ForeignKey("tickets.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="llm_usage")
    agent_run = models.ForeignKey(
        "sandboxes.AgentRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="llm_usage"
    )
    phase = models.CharField(max_length=32, blank=True)
    turn = models.PositiveIntegerField(null=True, blank=True, help_text="The agent run's turn this call made.")
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "LLM usage"
        verbose_name_plural = "LLM usage"
        indexes = [models.Index(fields=["spec", "phase"], name="omoi_usage_spec_phase")]
        constraints = [
            # A turn's usage is recorded with the turn, once, however often its message was delivered.
            models.UniqueConstraint(fields=["agent_run", "turn"], name="omoi_usage_once_per_turn")
        ]

    def __str__(self) -> str:
        what = f" for {self.phase}" if self.phase else ""
        return f"{self.model}{what}: {self.input_tokens + self.output_tokens} tokens"


class Lease(models.Model):
    """A unit of work that should be moving, and who is doing it.

    One row per (kind, object): a spec's next step, a ticket's next step. `work_enqueue` writes it in
    the transaction that made the work due and sends its Celery message on commit; a worker claims it
    (owner and expiry, renewed by a heartbeat while it runs), does the slow part outside every row
    lock, and commits the outcome in one short transaction that only the owner may make, deleting the
    row or handing it to the next step. A row that nobody holds (a lost message) or whose expiry has
    passed (a killed worker) is found by the reconciler and sent again: the database, not the broker,
    is the truth. See omoi/leases.py.
    """

    kind = models.CharField(max_length=32)
    object_id = models.PositiveBigIntegerField()
    queue = models.CharField(max_length=200, blank=True, help_text="Where its message goes; empty: the task's route.")
    owner = models.CharField(max_length=200, blank=True, help_text="Empty while the step waits for a worker.")
    expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField()
    not_before = models.DateTimeField(null=True, blank=True, help_text="Back-off after a failure.")
    rerun = models.BooleanField(default=False, help_text="More work arrived while the step ran: run again.")
    token = models.CharField(max_length=32, blank=True)
    claims = models.PositiveIntegerField(default=0, help_text="Claims of this step (a killed worker repeats one).")
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failures of this step.")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["kind", "object_id"], name="omoi_lease_one_per_object")]
        indexes = [
            models.Index(fields=["owner", "expires_at"], name="omoi_lease_owner_expiry"),
            models.Index(fields=["enqueued_at"], name="omoi_lease_enqueued"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.object_id}"


class WorkerNode(models.Model):
    """A Celery worker process tree (a machine, in production) and the queue only it consumes.
    Steps that need its local disk (a local sandbox) are routed there; a node that stops beating is
    dead, and the reconciler hands its work to the others."""

    name = models.CharField(max_length=200, unique=True)
    queue = models.CharField(max_length=200)
    data_dir = models.CharField(max_length=1000, blank=True)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BudgetAccount(models.Model):
    """What may be spent on model calls in one scope — a spec ("spec:12"), a task across its runs and
    retries ("task:34"), a project on one day ("project:5:2026-12-02") — and what has been spent and
    reserved. A call reserves its worst-case cost under this row's lock before it is made and
    settles to its real cost when its turn commits (omoi/budgets.py), so calls running in parallel
    cannot overshoot together."""

    key = models.CharField(max_length=100, unique=True)
    limit_usd = models.DecimalField(max_digits=12, decimal_places=6)
    spent_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    reserved_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key}: {self.spent_usd}/{self.limit_usd}"


class BudgetReservation(models.Model):
    """The reservation of one agent run's next model call, until its turn settles it. A run has at
    most one; a stale one (a worker died mid-call) is released by the run's next reservation or by
    the reconciler."""

    agent_run = models.OneToOneField("sandboxes.AgentRun", on_delete=models.CASCADE, related_name="reservation")
    accounts = models.JSONField(default=list)
    amount_usd = models.DecimalField(max_digits=12, decimal_places=6)
    created_at = models.DateTimeField(auto_now_add=True)
