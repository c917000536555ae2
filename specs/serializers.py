"""Shapes of the planning API. Serializers validate input and render output; they never create
or move anything (views call the services)."""

from __future__ import annotations

from rest_framework import serializers

from sandboxes.models import AgentRun, SandboxEvent
from specs.models import EarsType, Spec, SpecAcceptanceCriterion, SpecRequirement, SpecTask
from specs.selectors import spec_usage
from tickets.models import Priority


class CriterionSerializer(serializers.ModelSerializer):
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


class SpecSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    approved_by = serializers.CharField(source="approved_by.username", read_only=True, default=None)
    requirements = RequirementSerializer(many=True, read_only=True)
    tasks = SpecTaskSerializer(many=True, read_only=True)
    usage = serializers.SerializerMethodField()

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
            "requirements",
            "tasks",
            "usage",
        ]

    def get_usage(self, spec: Spec) -> dict:
        return spec_usage(spec_id=spec.pk)


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
