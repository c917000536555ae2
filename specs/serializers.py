"""Shapes of the planning API. Serializers validate input and render output; they never create
or move anything (views call the services)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from sandboxes.models import AgentRun, SandboxEvent
from specs.models import EarsType, Spec, SpecAcceptanceCriterion, SpecRequirement, SpecTask
from specs.selectors import DETAIL_PHASE_DATA, spec_budget, spec_usage
from tickets.models import Priority


class CriterionSerializer(serializers.ModelSerializer):
    evidence = serializers.JSONField(
        read_only=True,
        help_text=(
            "Why the criterion is verified or not, stored when the spec completes: `verified`, `reason`, and "
            "`tickets` (the tickets covering its requirement: `ticket`, `key`, `title`, `phase`, `commits`, "
            "`tests` (their last test run) and `tasks`, each agent task's verification: `task`, `task_type`, "
            "`commit`, `base`, `tests` (counts of the suite), `red_to_green` (`status` measured, not_measured or "
            "not_applicable, `reason`, `before_commit`, `red_to_green` (how many files), `files`: `path`, "
            "`command`, `verdict` red_to_green, passed_before, not_green_after or not_measured, and the runs "
            "`before` and `after` with `outcome` and counts) and `coverage` (`status`, `reason`, `percent`, and "
            "per changed source file `path`, `changed`, `covered`, `percent`, `never_run` line ranges))."
        ),
    )

    class Meta:
        model = SpecAcceptanceCriterion
        fields = ["id", "position", "text", "verified", "evidence", "verified_at"]


class RequirementSerializer(serializers.ModelSerializer):
    criteria = CriterionSerializer(many=True, read_only=True)

    class Meta:
        model = SpecRequirement
        fields = [
            "id",
            "key",
            "title",
            "ears_type",
            "text",
            "condition",
            "action",
            "priority",
            "position",
            "criteria",
        ]


class SpecTaskSerializer(serializers.ModelSerializer):
    depends_on = serializers.SerializerMethodField()
    requirements = serializers.SerializerMethodField()
    ticket = serializers.SerializerMethodField()

    class Meta:
        model = SpecTask
        fields = [
            "id",
            "key",
            "title",
            "description",
            "phase",
            "priority",
            "estimate_hours",
            "status",
            "files",
            "acceptance_criteria",
            "position",
            "depends_on",
            "requirements",
            "ticket",
        ]

    def get_depends_on(self, task: SpecTask) -> list[str]:
        return sorted(dependency.key for dependency in task.dependencies.all())

    def get_requirements(self, task: SpecTask) -> list[str]:
        return sorted(requirement.key for requirement in task.requirements.all())

    def get_ticket(self, task: SpecTask) -> int | None:
        ticket = getattr(task, "ticket", None)
        return ticket.pk if ticket is not None else None


SPEC_FIELDS = [
    "id",
    "project",
    "user",
    "title",
    "idea",
    "status",
    "current_phase",
    "progress",
    "require_approval",
    "approved_at",
    "phase_attempts",
    "last_error",
    "created_at",
    "updated_at",
]


class SpecListSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    requirements_count = serializers.IntegerField(read_only=True)
    tasks_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Spec
        fields = [*SPEC_FIELDS, "requirements_count", "tasks_count"]


class SpecCountsSerializer(serializers.Serializer):
    requirements = serializers.IntegerField(source="requirements_count")
    criteria = serializers.IntegerField(source="criteria_count")
    criteria_verified = serializers.IntegerField(source="criteria_verified_count")
    tasks = serializers.IntegerField(source="tasks_count")
    tickets = serializers.IntegerField(source="tickets_count")
    tickets_done = serializers.IntegerField(source="tickets_done_count")
    events = serializers.IntegerField(source="last_sequence", help_text="The last event's sequence number.")


class SpecLinksSerializer(serializers.Serializer):
    requirements = serializers.URLField(help_text="GET: the requirements with their criteria, paginated.")
    tasks = serializers.URLField(help_text="GET: the planned tasks with dependencies and tickets, paginated.")
    events = serializers.URLField(help_text="GET: the event stream (after=, limit=).")
    transcripts = serializers.URLField(help_text="GET: the planning conversations.")
    tickets = serializers.URLField(help_text="GET: the spec's tickets, paginated.")


class SpecUsageSerializer(serializers.Serializer):
    calls = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cache_creation_input_tokens = serializers.IntegerField()
    cache_read_input_tokens = serializers.IntegerField()
    cost_usd = serializers.CharField(help_text="A decimal number of US dollars, as text.")


class SpecBudgetSerializer(serializers.Serializer):
    limit_usd = serializers.CharField(help_text="The spec's budget (Spec.budget_usd, else OMOI_SPEC_BUDGET_USD).")
    spent_usd = serializers.CharField(help_text="What its model calls cost so far.")
    reserved_usd = serializers.CharField(help_text="Held for calls being made now.")
    remaining_usd = serializers.CharField()


class SpecSerializer(serializers.ModelSerializer):
    """One spec: its own fields, counts of what it holds and links to page through it. Its
    requirements and tasks are at `links.requirements` and `links.tasks`, so the answer stays the
    same size however large the spec grows."""

    user = serializers.CharField(source="user.username", read_only=True)
    approved_by = serializers.CharField(source="approved_by.username", read_only=True, default=None, allow_null=True)
    phase_data = serializers.SerializerMethodField(
        help_text="The explore phase's output (the requirements and tasks phases' are rows: see links)."
    )
    counts = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    budget = serializers.SerializerMethodField()

    class Meta:
        model = Spec
        fields = [
            *SPEC_FIELDS,
            "approved_by",
            "phase_started_at",
            "phase_data",
            "design",
            "branch_name",
            "pull_request_url",
            "pull_request_number",
            "completed_at",
            "counts",
            "links",
            "usage",
            "budget_usd",
            "budget",
        ]
        read_only_fields = ["budget_usd"]

    @extend_schema_field(serializers.DictField())
    def get_phase_data(self, spec: Spec) -> dict:
        return {
            phase: value
            for phase in DETAIL_PHASE_DATA
            if (value := getattr(spec, f"phase_data_{phase}", None)) is not None
        }

    @extend_schema_field(SpecCountsSerializer)
    def get_counts(self, spec: Spec) -> dict:
        return SpecCountsSerializer(spec).data

    @extend_schema_field(SpecLinksSerializer)
    def get_links(self, spec: Spec) -> dict:
        request = self.context.get("request")

        def url(name: str, query: str = "") -> str:
            path = reverse(name, kwargs={"pk": spec.pk}) if name else reverse("ticket-list")
            path += query
            return request.build_absolute_uri(path) if request else path

        return {
            "requirements": url("spec-requirements"),
            "tasks": url("spec-tasks"),
            "events": url("spec-events", "?after=0"),
            "transcripts": url("spec-transcripts"),
            "tickets": url("", f"?spec={spec.pk}"),
        }

    @extend_schema_field(SpecUsageSerializer)
    def get_usage(self, spec: Spec) -> dict:
        return spec_usage(spec_id=spec.pk)

    @extend_schema_field(SpecBudgetSerializer)
    def get_budget(self, spec: Spec) -> dict:
        return spec_budget(spec=spec)


class SpecLaunchSerializer(serializers.Serializer):
    project = serializers.IntegerField(min_value=1)
    idea = serializers.CharField(max_length=20000)
    title = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    require_approval = serializers.BooleanField(required=False, default=True)


class RequirementUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=500, required=False)
    ears_type = serializers.ChoiceField(choices=EarsType.choices, required=False)
    text = serializers.CharField(required=False)
    condition = serializers.CharField(required=False, allow_blank=True)
    action = serializers.CharField(required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    acceptance_criteria = serializers.ListField(
        child=serializers.CharField(max_length=5000), min_length=1, required=False
    )

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(f"unknown or read-only fields: {', '.join(unknown)}")
        if not attrs:
            raise serializers.ValidationError(f"nothing to change: send one or more of {', '.join(self.fields)}")
        return attrs


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = SandboxEvent
        fields = ["sequence", "type", "payload", "created_at", "ticket", "task"]


class TranscriptSerializer(serializers.ModelSerializer):
    messages = serializers.SerializerMethodField(help_text="The conversation in the Messages API shape.")

    class Meta:
        model = AgentRun
        fields = [
            "id",
            "kind",
            "phase",
            "status",
            "turns",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "stop_reason",
            "error",
            "system_prompt",
            "messages",
            "started_at",
            "finished_at",
        ]

    def get_messages(self, run: AgentRun) -> list[dict]:
        return [row.as_message() for row in run.transcript.all()]


class BudgetSerializer(serializers.Serializer):
    budget_usd = serializers.DecimalField(
        max_digits=10,
        decimal_places=2,
        min_value=0,
        allow_null=True,
        help_text="What the spec's model calls may cost in all, in US dollars; null: the default.",
    )
