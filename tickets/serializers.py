"""Shapes of the tickets API: serializers validate input and render output; they never create or
move anything (the views call services for that)."""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tickets.models import (
    BlockedReason,
    Phase,
    PhaseGateArtifact,
    PhaseGateResult,
    PhaseHistory,
    Priority,
    Project,
    Task,
    Ticket,
)
from tickets.repository_policy import RepositoryRefused, branch_name_check, repository_check, repository_reach
from tickets.selectors import projects_visible_to

GITHUB_REPO_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")


class ProjectSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    github_token = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="This project's own GitHub token (instead of the server's); stored encrypted, never shown.",
    )
    has_github_token = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "owner",
            "repository",
            "default_branch",
            "github_repo",
            "test_command",
            "setup_command",
            "network_allowed",
            "github_token",
            "has_github_token",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "owner", "created_at", "updated_at"]
        extra_kwargs = {
            "default_branch": {"required": False},
            "repository": {
                "help_text": "An https:// URL on an allowed host, or a path under OMOI_LOCAL_REPOSITORY_ROOTS; "
                "it must be reachable (git ls-remote) and have the default branch."
            },
        }

    def get_has_github_token(self, project: Project) -> bool:
        return bool(project.github_token_encrypted)

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("a project needs a name")
        return value

    def validate_test_command(self, value: str) -> str:
        return value.strip()

    def validate_setup_command(self, value: str) -> str:
        return value.strip()

    def validate_default_branch(self, value: str) -> str:
        try:
            return branch_name_check(value.strip() or "main")
        except RepositoryRefused as error:
            raise serializers.ValidationError(str(error)) from error

    def validate_repository(self, value: str) -> str:
        try:
            return repository_check(value.strip())
        except RepositoryRefused as error:
            raise serializers.ValidationError(str(error)) from error

    def validate(self, attrs: dict) -> dict:
        # Reached once, after every rule passed, so a refused form never costs a network call.
        try:
            repository_reach(attrs["repository"], default_branch=attrs.get("default_branch") or "main")
        except RepositoryRefused as error:
            raise serializers.ValidationError({"repository": [str(error)]}) from error
        return attrs

    def validate_github_repo(self, value: str) -> str:
        value = value.strip()
        if value and (not GITHUB_REPO_PATTERN.fullmatch(value) or value.split("/")[1] in (".", "..")):
            raise serializers.ValidationError('github_repo must look like "owner/name", for example "octo/widgets"')
        return value


@extend_schema_field(OpenApiTypes.INT)
class VisibleProjectField(serializers.PrimaryKeyRelatedField):
    """A project id, accepted only if the requesting user can see the project."""

    default_error_messages = {
        "does_not_exist": "project {pk_value} does not exist or is not yours",
        "incorrect_type": "project must be a project id (a number), not {data_type}",
    }

    def get_queryset(self):
        return projects_visible_to(self.context["request"].user)


def blank_or(choices: type, help_text: str) -> serializers.ChoiceField:
    """A read-only choice that may be "" (never null): the schema's enum then includes "" too."""
    return serializers.ChoiceField(choices=choices.choices, allow_blank=True, read_only=True, help_text=help_text)


class TicketSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    previous_phase = blank_or(Phase, 'The phase before the last move; "" before the first.')
    blocked_reason = blank_or(BlockedReason, 'Why the ticket is BLOCKED; "" when it is not.')
    dependencies = serializers.SerializerMethodField()
    tasks_done = serializers.IntegerField(read_only=True, default=0)
    tasks_total = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Ticket
        fields = [
            "id",
            "project",
            "spec",
            "spec_task",
            "user",
            "title",
            "description",
            "phase",
            "previous_phase",
            "priority",
            "blocked_reason",
            "blocked_message",
            "dependencies",
            "tasks_done",
            "tasks_total",
            "context_summary",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_dependencies(self, ticket: Ticket) -> list[int]:
        return [link.depends_on_id for link in ticket.dependency_links.all()]


class TicketCreateSerializer(serializers.Serializer):
    project = VisibleProjectField()
    title = serializers.CharField(max_length=500)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    priority = serializers.ChoiceField(choices=Priority.choices, required=False, default=Priority.MEDIUM)
    dependencies = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, default=list, max_length=200
    )

    def validate_title(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("a ticket needs a title")
        return value


class TransitionSerializer(serializers.Serializer):
    to_phase = serializers.ChoiceField(choices=Phase.choices)
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    blocked_reason = serializers.ChoiceField(
        choices=BlockedReason.choices,
        required=False,
        default=BlockedReason.OTHER,
        help_text="Only for to_phase BLOCKED (default other); /block is the usual way to block.",
    )
    message = serializers.CharField(required=False, allow_blank=True, default="")


class TransitionResultSerializer(serializers.Serializer):
    ticket_id = serializers.IntegerField()
    previous_phase = serializers.CharField(help_text="The phase before this request.")
    current_phase = serializers.CharField()
    transitioned = serializers.BooleanField(help_text="False when the ticket already was in to_phase.")
    transitioned_at = serializers.DateTimeField()
    transitioned_by = serializers.CharField()
    ticket = TicketSerializer()


class BlockSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=BlockedReason.choices)
    message = serializers.CharField(required=False, allow_blank=True, default="")


class UnblockSerializer(serializers.Serializer):
    to_phase = serializers.ChoiceField(
        choices=Phase.choices, required=False, help_text="Default: the phase the ticket was blocked in."
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class PhaseHistorySerializer(serializers.ModelSerializer):
    from_phase = blank_or(Phase, 'The phase the ticket left; "" for its creation.')

    class Meta:
        model = PhaseHistory
        fields = ["id", "from_phase", "to_phase", "reason", "actor", "artifacts", "created_at"]
        read_only_fields = fields


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = PhaseGateArtifact
        fields = ["id", "ticket", "phase", "artifact_type", "path", "content", "collected_by", "collected_at"]
        read_only_fields = fields


class ArtifactCreateSerializer(serializers.Serializer):
    artifact_type = serializers.CharField(max_length=64, error_messages={"blank": "artifact_type must not be empty"})
    content = serializers.JSONField()
    path = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)
    phase = serializers.ChoiceField(
        choices=Phase.choices,
        required=False,
        help_text="Default: the ticket's current phase (for a blocked ticket, the phase it was blocked in).",
    )

    def validate_phase(self, value: str) -> str:
        if value == Phase.BLOCKED:
            raise serializers.ValidationError("artifacts belong to a working phase, not BLOCKED")
        return value

    def validate_artifact_type(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("artifact_type must not be empty")
        return value

    def validate_content(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("content must be a JSON object")
        return value


class PhaseRequestSerializer(serializers.Serializer):
    phase = serializers.ChoiceField(
        choices=Phase.choices, required=False, help_text="Default: the ticket's current phase."
    )


class GateResultSerializer(serializers.ModelSerializer):
    ticket_id = serializers.IntegerField(read_only=True)
    gate_status = serializers.CharField(source="status", read_only=True)
    passed = serializers.SerializerMethodField()
    requirements_met = serializers.SerializerMethodField()
    missing_artifacts = serializers.SerializerMethodField()

    class Meta:
        model = PhaseGateResult
        fields = [
            "id",
            "ticket_id",
            "phase",
            "gate_status",
            "passed",
            "requirements_met",
            "missing_artifacts",
            "blocking_reasons",
            "details",
            "validated_by",
            "validated_at",
        ]
        read_only_fields = fields

    def get_passed(self, result: PhaseGateResult) -> bool:
        return result.status == "passed"

    def get_requirements_met(self, result: PhaseGateResult) -> bool:
        return result.status == "passed"

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_missing_artifacts(self, result: PhaseGateResult) -> list[str]:
        return list((result.details or {}).get("missing_artifacts", []))


class TaskSerializer(serializers.ModelSerializer):
    class Meta:
        model = Task
        fields = [
            "id",
            "ticket",
            "phase",
            "task_type",
            "executor",
            "title",
            "description",
            "priority",
            "status",
            "result",
            "error",
            "attempts",
            "started_at",
            "completed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class GeneratedTasksSerializer(serializers.Serializer):
    ticket_id = serializers.IntegerField()
    phase = serializers.CharField()
    generated_tasks = TaskSerializer(many=True, help_text="Tasks this request created (none on a repeat).")
    tasks = TaskSerializer(many=True, help_text="Every task of the phase.")


class ContextSerializer(serializers.Serializer):
    ticket_id = serializers.IntegerField()
    full_context = serializers.DictField(help_text="Per finished phase: tasks, summary, decisions, risks, artifacts.")
    summary = serializers.CharField()
    last_updated = serializers.DateTimeField(allow_null=True)


class BoardTicketSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    priority = serializers.ChoiceField(choices=Priority.choices)
    spec = serializers.IntegerField(allow_null=True)
    blocked_reason = serializers.ChoiceField(choices=BlockedReason.choices, allow_blank=True)
    tasks_done = serializers.IntegerField()
    tasks_total = serializers.IntegerField()


class BoardColumnSerializer(serializers.Serializer):
    phase = serializers.ChoiceField(choices=Phase.choices)
    label = serializers.CharField()
    count = serializers.IntegerField(help_text="Every ticket in the column, shown or not.")
    more = serializers.BooleanField(help_text="Whether the column holds more tickets than it shows.")
    tickets = BoardTicketSerializer(many=True)


class BoardSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    limit = serializers.IntegerField(help_text="At most this many tickets are shown per column.")
    columns = BoardColumnSerializer(many=True)
    counts = serializers.DictField(child=serializers.IntegerField())
    total = serializers.IntegerField()


class MessageCreateSerializer(serializers.Serializer):
    """A message to a running agent."""

    text = serializers.CharField(max_length=10_000, help_text="What the agent should know, in plain words.")
    idempotency_key = serializers.CharField(
        max_length=200,
        required=False,
        default="",
        allow_blank=True,
        help_text="Send the same key again and the first message is answered instead of a second one.",
    )


class QueuedMessageSerializer(serializers.ModelSerializer):
    """A message to an agent: pending until the next turn boundary, then delivered (once), with the
    run and turn that carried it."""

    class Meta:
        from sandboxes.models import QueuedMessage

        model = QueuedMessage
        fields = [
            "id",
            "text",
            "source",
            "author",
            "idempotency_key",
            "status",
            "run",
            "delivered_turn",
            "delivered_at",
            "created_at",
        ]
        read_only_fields = fields
