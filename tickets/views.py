"""The tickets REST API. Views check visibility (another user's object is a 404), validate with
serializers, and call one service; domain refusals become 409 Conflict with the reason."""

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from omoi.api import Conflict, query_int
from omoi.schema import error_responses
from tickets import selectors, services
from tickets.errors import (
    GateBlocked,
    InvalidArtifact,
    InvalidDependency,
    InvalidTaskState,
    InvalidTransition,
    ProjectNameTaken,
)
from tickets.filters import TaskFilter, TicketFilter
from tickets.models import Phase, Task, Ticket
from tickets.serializers import (
    ArtifactCreateSerializer,
    ArtifactSerializer,
    BlockSerializer,
    BoardSerializer,
    ContextSerializer,
    GateResultSerializer,
    GeneratedTasksSerializer,
    MessageCreateSerializer,
    PhaseHistorySerializer,
    PhaseRequestSerializer,
    ProjectSerializer,
    QueuedMessageSerializer,
    TaskSerializer,
    TicketCreateSerializer,
    TicketSerializer,
    TransitionResultSerializer,
    TransitionSerializer,
    UnblockSerializer,
)

BOARD_LIMIT_MAX = 500


def actor_of(request: Request) -> str:
    return f"user:{request.user.get_username()}"


def conflict_from(error: Exception) -> Conflict:
    if isinstance(error, GateBlocked):
        return Conflict(
            str(error),
            extra={
                "phase": error.phase,
                "blocking_reasons": error.reasons,
                "gate_result": error.gate_result.pk if error.gate_result else None,
            },
        )
    if isinstance(error, InvalidTransition):
        return Conflict(error.reason, extra={"from_phase": error.from_phase, "to_phase": error.to_phase})
    return Conflict(str(error))


class ProjectViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Projects you own or belong to. POST creates one owned by you."""

    serializer_class = ProjectSerializer

    def get_queryset(self):
        return selectors.project_list(user=self.request.user)

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            project = services.project_create(owner=request.user, **serializer.validated_data)
        except ProjectNameTaken as error:
            raise ValidationError({"name": [str(error)]}) from error
        return Response(self.get_serializer(project).data, status=status.HTTP_201_CREATED)


class TicketViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Tickets of your projects, and every move of the workflow engine."""

    serializer_class = TicketSerializer
    filterset_class = TicketFilter

    def get_queryset(self):
        if self.action in ("list", "retrieve"):
            return selectors.ticket_list(user=self.request.user)
        return selectors.tickets_visible_to(self.request.user)

    def filter_queryset(self, queryset):
        # The list filters (?phase=, ?project=) pick tickets; on a ticket's own actions a query
        # parameter means something else (GET .../artifacts?phase=) and must not hide the ticket.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def _annotated(self, ticket_id: int) -> Ticket:
        return selectors.ticket_list(user=self.request.user).get(pk=ticket_id)

    @extend_schema(request=TicketCreateSerializer, responses={201: TicketSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = TicketCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            ticket = services.ticket_create(
                project_id=data["project"].pk,
                user=request.user,
                title=data["title"],
                description=data["description"],
                priority=data["priority"],
                dependency_ids=data["dependencies"],
                actor=actor_of(request),
            )
        except InvalidDependency as error:
            raise ValidationError({"dependencies": [str(error)]}) from error
        return Response(TicketSerializer(self._annotated(ticket.pk)).data, status=status.HTTP_201_CREATED)

    def _move(self, request: Request, ticket: Ticket, move) -> Response:
        before = ticket.phase
        try:
            moved = move()
        except (InvalidTransition, GateBlocked) as error:
            raise conflict_from(error) from error
        body = {
            "ticket_id": moved.pk,
            "previous_phase": before,
            "current_phase": moved.phase,
            "transitioned": moved.phase != before,
            "transitioned_at": moved.updated_at,
            "transitioned_by": actor_of(request),
            "ticket": self._annotated(moved.pk),
        }
        return Response(TransitionResultSerializer(body).data)

    @extend_schema(request=TransitionSerializer, responses={200: TransitionResultSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk=None) -> Response:
        """Move the ticket to `to_phase`, if the transition table and the phase gate allow (else 409)."""
        ticket = self.get_object()
        serializer = TransitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return self._move(
            request,
            ticket,
            lambda: services.ticket_transition(
                ticket_id=ticket.pk,
                to=data["to_phase"],
                actor=actor_of(request),
                reason=data["reason"],
                blocked_reason=data["blocked_reason"] if data["to_phase"] == Phase.BLOCKED else "",
                blocked_message=data["message"] or data["reason"],
            ),
        )

    @extend_schema(request=BlockSerializer, responses={200: TransitionResultSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def block(self, request: Request, pk=None) -> Response:
        """Block the ticket with a typed reason and a message."""
        ticket = self.get_object()
        serializer = BlockSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return self._move(
            request,
            ticket,
            lambda: services.ticket_block(
                ticket_id=ticket.pk, reason=data["reason"], message=data["message"], actor=actor_of(request)
            ),
        )

    @extend_schema(request=UnblockSerializer, responses={200: TransitionResultSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def unblock(self, request: Request, pk=None) -> Response:
        """Return a blocked ticket to the phase it was blocked in (or `to_phase`, where the table allows)."""
        ticket = self.get_object()
        serializer = UnblockSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return self._move(
            request,
            ticket,
            lambda: services.ticket_unblock(
                ticket_id=ticket.pk, to=data.get("to_phase"), reason=data["reason"], actor=actor_of(request)
            ),
        )

    @extend_schema(responses={200: PhaseHistorySerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None)
    def history(self, request: Request, pk=None) -> Response:
        ticket = self.get_object()
        return Response(PhaseHistorySerializer(selectors.ticket_history(ticket), many=True).data)

    @extend_schema(
        methods=["GET"],
        parameters=[OpenApiParameter("phase", str, enum=Phase.values, required=False)],
        responses={200: ArtifactSerializer(many=True)},
    )
    @extend_schema(methods=["POST"], request=ArtifactCreateSerializer, responses={201: ArtifactSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def artifacts(self, request: Request, pk=None) -> Response:
        """GET lists the ticket's gate artifacts (optionally of one phase); POST collects one."""
        ticket = self.get_object()
        if request.method == "GET":
            phase = request.query_params.get("phase")
            if phase and phase not in Phase.values:
                raise ValidationError({"phase": [f"unknown phase {phase!r}; use one of {', '.join(Phase.values)}"]})
            return Response(ArtifactSerializer(selectors.ticket_artifacts(ticket, phase=phase), many=True).data)
        serializer = ArtifactCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            artifact = services.artifact_collect(
                ticket_id=ticket.pk,
                phase=data.get("phase"),
                artifact_type=data["artifact_type"],
                path=data["path"],
                content=data["content"],
                collected_by=actor_of(request),
            )
        except InvalidArtifact as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response(ArtifactSerializer(artifact).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PhaseRequestSerializer, responses={200: GateResultSerializer})
    @action(detail=True, methods=["post"], url_path="validate-gate")
    def validate_gate(self, request: Request, pk=None) -> Response:
        """Evaluate the exit gate of a phase (default: the current one) and store the result."""
        ticket = self.get_object()
        serializer = PhaseRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.gate_evaluate(
            ticket_id=ticket.pk, phase=serializer.validated_data.get("phase"), actor=actor_of(request)
        )
        return Response(GateResultSerializer(result).data)

    @extend_schema(request=PhaseRequestSerializer, responses={200: GeneratedTasksSerializer})
    @action(detail=True, methods=["post"], url_path="generate-tasks")
    def generate_tasks(self, request: Request, pk=None) -> Response:
        """Create a phase's tasks from the templates (default: the current phase). A repeat creates nothing."""
        ticket = self.get_object()
        serializer = PhaseRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        phase = serializer.validated_data.get("phase") or ticket.phase
        created = services.tasks_generate(ticket_id=ticket.pk, phase=phase)
        body = {
            "ticket_id": ticket.pk,
            "phase": phase,
            "generated_tasks": created,
            "tasks": Task.objects.filter(ticket=ticket, phase=phase).order_by("id"),
        }
        return Response(GeneratedTasksSerializer(body).data)

    @extend_schema(responses={200: ContextSerializer})
    @action(detail=True, methods=["get"])
    def context(self, request: Request, pk=None) -> Response:
        """What the ticket's earlier phases found: per phase, and as a bounded summary."""
        ticket = self.get_object()
        body = {
            "ticket_id": ticket.pk,
            "full_context": ticket.context or {},
            "summary": ticket.context_summary,
            "last_updated": ticket.context_updated_at,
        }
        return Response(ContextSerializer(body).data)


class TaskViewSet(viewsets.ReadOnlyModelViewSet):
    """Tasks of your projects' tickets."""

    serializer_class = TaskSerializer
    filterset_class = TaskFilter

    def get_queryset(self):
        return selectors.task_list(user=self.request.user)

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    @extend_schema(request=None, responses={200: TaskSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk=None) -> Response:
        """Return a failed or cancelled task to pending; it runs when its ticket allows."""
        task = self.get_object()
        try:
            task = services.task_retry(task_id=task.pk, actor=actor_of(request))
        except InvalidTaskState as error:
            raise conflict_from(error) from error
        return Response(TaskSerializer(task).data)

    @extend_schema(
        methods=["GET"],
        request=None,
        responses={200: QueuedMessageSerializer(many=True)},
        operation_id="tasks_messages_list",
    )
    @extend_schema(
        methods=["POST"],
        request=MessageCreateSerializer,
        responses={201: QueuedMessageSerializer, 200: QueuedMessageSerializer, **error_responses(409)},
    )
    @action(detail=True, methods=["get", "post"])
    def messages(self, request: Request, pk=None) -> Response:
        """Messages to the task's agent. POST queues one, delivered exactly once at the run's next turn
        (201; 200 with the first message when its idempotency_key was seen; 409 when the task's run is
        over or the task has no agent)."""
        from sandboxes.models import QueuedMessage
        from tickets.services.messages import task_message_send

        task = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(QueuedMessage.objects.filter(task=task).order_by("id"))
            return self.get_paginated_response(QueuedMessageSerializer(page, many=True).data)
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            message, created = task_message_send(
                task_id=task.pk,
                text=serializer.validated_data["text"],
                author=request.user.username,
                idempotency_key=serializer.validated_data["idempotency_key"],
            )
        except InvalidTaskState as error:
            raise conflict_from(error) from error
        except ValueError as error:
            raise ValidationError({"text": [str(error)]}) from error
        return Response(
            QueuedMessageSerializer(message).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class BoardView(APIView):
    """The kanban board of one project: columns in phase order (then BLOCKED) with their tickets."""

    schema_answers_404 = True

    @extend_schema(
        parameters=[
            OpenApiParameter("project", int, required=True, description="The project's id."),
            OpenApiParameter(
                "limit",
                int,
                required=False,
                description=f"Tickets shown per column, 1 to {BOARD_LIMIT_MAX} (default OMOI_BOARD_COLUMN_LIMIT); "
                "each column's `count` is its total and `more` says whether some are not shown.",
            ),
        ],
        responses={200: BoardSerializer},
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("project")
        if not raw:
            raise ValidationError({"project": ["the board needs ?project=<id>"]})
        if not (raw.isascii() and raw.isdigit()):
            raise ValidationError({"project": [f"project must be a project id (a number), not {raw!r}"]})
        limit = query_int(request, "limit", minimum=1)
        if limit is not None and limit > BOARD_LIMIT_MAX:
            raise ValidationError({"limit": [f"limit must be at most {BOARD_LIMIT_MAX}"]})
        project = get_object_or_404(selectors.projects_visible_to(request.user), pk=int(raw))
        # The selector builds the answer in its final shape (BoardSerializer documents it);
        # passing it through the serializer again would cost more than the queries.
        return Response(selectors.board_view(project=project, limit=limit or settings.OMOI_BOARD_COLUMN_LIMIT))
