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

    def __str__(self) -> str:
        what = f" for {self.phase}" if self.phase else ""
        return f"{self.model}{what}: {self.input_tokens + self.output_tokens} tokens"
