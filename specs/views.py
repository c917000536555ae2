"""The planning REST API. Views check visibility (another user's spec or project is a 404),
validate with serializers and call one service; a control the spec's state forbids is a 409 with
the reason."""

from __future__ import annotations

from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from omoi.api import Conflict, QuotaExceeded, UpstreamError
from omoi.github import GitHubError
from omoi.leases import lease_claim
from omoi.schema import error_responses
from sandboxes.git import GitError
from sandboxes.selectors import EVENTS_PAGE_LIMIT, events_after, last_sequence
from sandboxes.streaming import spec_event_snapshot, spec_event_stream
from specs import selectors
from specs.filters import SpecFilter
from specs.models import Spec, SpecRequirement
from specs.serializers import (
    BudgetSerializer,
    EventSerializer,
    RequirementSerializer,
    RequirementUpdateSerializer,
    SpecLaunchSerializer,
    SpecListSerializer,
    SpecSerializer,
    SpecTaskSerializer,
    TranscriptSerializer,
)
from specs.services.bridge import SpecNotExecutable, spec_execute
from specs.services.completion import PullRequestNotReady, spec_pull_request_open
from specs.services.planning import SPEC_KIND, SpecConflict, spec_approve, spec_cancel, spec_replan
from specs.services.quotas import QuotaUsedUp, spec_launch_within_quota, spec_retry_within_quota
from specs.services.requirements import RequirementInvalid, spec_requirement_update
from tickets.selectors import projects_visible_to
from tickets.serializers import MessageCreateSerializer, QueuedMessageSerializer

EventsPage = inline_serializer(
    name="SpecEventsPage",
    fields={"results": EventSerializer(many=True), "last_sequence": serializers.IntegerField()},
)
TranscriptsPage = inline_serializer(name="SpecTranscripts", fields={"results": TranscriptSerializer(many=True)})


def _non_negative_int(request: Request, name: str, default: int, raw: str | None = None) -> int:
    raw = request.query_params.get(name) if raw is None else raw
    if raw is None:
        return default
    if not (raw.isascii() and raw.lstrip("-").isdigit()):
        raise ValidationError({name: [f"must be a whole number, not {raw[:40]!r}"]})
    value = int(raw)
    if value < 0:
        raise ValidationError({name: ["must be 0 or more"]})
    return value


class EventStreamRenderer(BaseRenderer):
    """Lets a client that asks for `text/event-stream` (a browser's EventSource) reach the stream;
    the stream's body is written by the view, and its errors are rendered as JSON."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return JSONRenderer().render(data)


class SpecViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Specs of your projects: their requirements, criteria and tasks, and the controls of their
    planning (launch, approve, retry, cancel, replan, requirement edits)."""

    filterset_class = SpecFilter

    def filter_queryset(self, queryset):
        # ?project= and ?status= pick specs in the list; on one spec's own routes they mean nothing.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def get_queryset(self):
        if self.action == "list":
            return selectors.spec_list(user=self.request.user)
        if self.action == "retrieve":
            return selectors.spec_detail(user=self.request.user)
        return selectors.specs_visible_to(self.request.user)

    def get_serializer_class(self):
        return SpecListSerializer if self.action == "list" else SpecSerializer

    def finalize_response(self, request, response, *args, **kwargs):
        if getattr(self, "action", None) == "stream" and isinstance(response, Response):
            # An error from the stream endpoint (404, 400, 401) is JSON, whatever was accepted.
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def _render(self, spec: Spec, code: int = status.HTTP_200_OK) -> Response:
        spec = selectors.spec_detail(user=self.request.user).get(pk=spec.pk)
        return Response(SpecSerializer(spec, context=self.get_serializer_context()).data, status=code)

    def _control(self, service, request: Request) -> Response:
        spec = self.get_object()
        try:
            spec = service(spec_id=spec.pk, user=request.user)
        except SpecConflict as error:
            raise Conflict(error.reason, extra={"status": spec.status, "current_phase": spec.current_phase}) from error
        return self._render(spec)

    @extend_schema(request=SpecLaunchSerializer, responses={201: SpecSerializer, **error_responses(404, 429)})
    @action(detail=False, methods=["post"])
    def launch(self, request: Request) -> Response:
        """Create a spec for an idea on one of your projects and start planning it."""
        serializer = SpecLaunchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = projects_visible_to(request.user).filter(pk=data["project"]).first()
        if project is None:
            raise NotFound(f"project {data['project']} not found")
        if not data["idea"].strip():
            raise ValidationError({"idea": ["the idea is empty"]})
        try:
            spec = spec_launch_within_quota(
                project_id=project.pk,
                user=request.user,
                idea=data["idea"],
                title=data["title"],
                require_approval=data["require_approval"],
            )
        except QuotaUsedUp as error:
            raise QuotaExceeded(error.message, quota=error.quota, limit=error.limit, window_s=error.window_s) from error
        return self._render(spec, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: SpecSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk=None) -> Response:
        """Approve a planned spec (only from planning_complete): its tasks become tickets."""
        return self._control(spec_approve, request)

    @extend_schema(request=None, responses={200: SpecSerializer, **error_responses(409, 429)})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk=None) -> Response:
        """Resume a failed spec at the phase that failed (429 when the user's open specs are used up)."""
        try:
            return self._control(spec_retry_within_quota, request)
        except QuotaUsedUp as error:
            raise QuotaExceeded(error.message, quota=error.quota, limit=error.limit, window_s=error.window_s) from error

    @extend_schema(request=None, responses={200: SpecSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk=None) -> Response:
        """Cancel a spec that is draft, planning, planned or executing."""
        return self._control(spec_cancel, request)

    @extend_schema(request=None, responses={200: SpecSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def replan(self, request: Request, pk=None) -> Response:
        """Re-run DESIGN and TASKS with the current requirements, then re-sync tasks by key."""
        return self._control(spec_replan, request)

    @extend_schema(request=None, responses={200: SpecSerializer, **error_responses(409, 502)})
    @action(detail=True, methods=["post"], url_path="execute-tasks")
    def execute_tasks(self, request: Request, pk=None) -> Response:
        """Run the bridge now: every planned task becomes one ticket and the spec executes
        (409 unless planning is complete and approved). Running it again creates nothing."""
        spec = self.get_object()
        try:
            spec = spec_execute(spec_id=spec.pk, actor=f"user:{request.user.username}")
        except SpecNotExecutable as error:
            raise Conflict(str(error), extra={"status": spec.status, "current_phase": spec.current_phase}) from error
        except GitError as error:
            raise UpstreamError(f"the repository could not be prepared: {error}") from error
        return self._render(spec)

    @extend_schema(request=None, responses={200: SpecSerializer, **error_responses(409, 502)})
    @action(detail=True, methods=["post"], url_path="create-pr")
    def create_pr(self, request: Request, pk=None) -> Response:
        """Retry the pull request step of a completed spec: push its branch and open the pull
        request (once: an existing one is found, not duplicated). 409 when the project names no
        GitHub repository, since there is nowhere to open one."""
        spec = self.get_object()
        if spec.status != "completed":
            raise Conflict(
                f"spec {spec.pk} is {spec.status}: only a completed spec gets a pull request",
                extra={"status": spec.status},
            )
        if not spec.project.github_repo:
            raise Conflict(
                f"project {spec.project.name!r} names no GitHub repository (github_repo), so no pull request can "
                f"be opened; the spec's branch {spec.branch_name or '(none yet)'} is pushed to the project's "
                "repository when the spec completes",
                extra={"status": spec.status, "branch": spec.branch_name},
            )
        held = lease_claim(kind=SPEC_KIND, object_id=spec.pk, create=True)
        if held is None:
            raise Conflict("the spec's pull request step is running in a worker now; try again in a moment")
        try:
            spec = spec_pull_request_open(spec_id=spec.pk, held=held)
        except PullRequestNotReady as error:
            held.fail(str(error), transient=False)
            raise Conflict(str(error), extra={"status": spec.status}) from error
        except (GitHubError, GitError) as error:
            held.fail(str(error), transient=getattr(error, "transient", False))
            raise UpstreamError(str(error)) from error
        finally:
            held.release_local()
        return self._render(spec)

    @extend_schema(
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="Only events with a higher sequence."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"At most this many (≤ {EVENTS_PAGE_LIMIT})."),
        ],
        responses={200: EventsPage},
    )
    @action(detail=True, methods=["get"])
    def events(self, request: Request, pk=None) -> Response:
        """The spec's events after sequence `after`, ascending; resume with `last_sequence`."""
        spec = self.get_object()
        after = _non_negative_int(request, "after", 0)
        limit = _non_negative_int(request, "limit", EVENTS_PAGE_LIMIT) or EVENTS_PAGE_LIMIT
        events = list(events_after(spec_id=spec.pk, after=after, limit=limit))
        return Response(
            {
                "results": EventSerializer(events, many=True).data,
                "last_sequence": events[-1].sequence if events else after,
            }
        )

    @extend_schema(
        methods=["GET"],
        request=None,
        responses={200: QueuedMessageSerializer(many=True)},
        operation_id="specs_messages_list",
    )
    @extend_schema(
        methods=["POST"],
        request=MessageCreateSerializer,
        responses={201: QueuedMessageSerializer, 200: QueuedMessageSerializer, **error_responses(409)},
    )
    @action(detail=True, methods=["get", "post"])
    def messages(self, request: Request, pk=None) -> Response:
        """Messages to the spec's planning agent. POST queues one while a planning phase runs,
        delivered exactly once at its next turn (201; 200 with the first message when its
        idempotency_key was seen; 409 when no planning conversation runs)."""
        from sandboxes.models import QueuedMessage
        from specs.services.planning import spec_message_send

        spec = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(QueuedMessage.objects.filter(spec=spec, task__isnull=True).order_by("id"))
            return self.get_paginated_response(QueuedMessageSerializer(page, many=True).data)
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            message, created = spec_message_send(
                spec_id=spec.pk,
                text=serializer.validated_data["text"],
                author=request.user.username,
                idempotency_key=serializer.validated_data["idempotency_key"],
            )
        except SpecConflict as error:
            raise Conflict(error.reason, extra={"status": spec.status, "current_phase": spec.current_phase}) from error
        except ValueError as error:
            raise ValidationError({"text": [str(error)]}) from error
        return Response(
            QueuedMessageSerializer(message).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(request=BudgetSerializer, responses={200: SpecSerializer})
    @action(detail=True, methods=["post"])
    def budget(self, request: Request, pk=None) -> Response:
        """Set the spec's budget for model calls (null: the default, OMOI_SPEC_BUDGET_USD). Raising it
        and retrying resumes work a budget stopped."""
        from specs.services.planning import spec_budget_set

        spec = self.get_object()
        serializer = BudgetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = spec_budget_set(spec_id=spec.pk, budget_usd=serializer.validated_data["budget_usd"], user=request.user)
        return self._render(spec)

    @extend_schema(responses={200: RequirementSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="requirements")
    def requirements(self, request: Request, pk=None) -> Response:
        """The spec's requirements with their acceptance criteria, in order, a page at a time."""
        spec = self.get_object()
        page = self.paginate_queryset(selectors.spec_requirements(spec=spec))
        return self.get_paginated_response(RequirementSerializer(page, many=True).data)

    @extend_schema(responses={200: SpecTaskSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def tasks(self, request: Request, pk=None) -> Response:
        """The spec's planned tasks (dependency keys, requirement keys, ticket), in order, a page at a time."""
        spec = self.get_object()
        page = self.paginate_queryset(selectors.spec_tasks(spec=spec))
        return self.get_paginated_response(SpecTaskSerializer(page, many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="Start after this sequence (default 0)."),
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.INT,
                location=OpenApiParameter.HEADER,
                description="Resume after this sequence; sent by EventSource on reconnection, wins over `after`.",
            ),
        ],
        responses={(200, "text/event-stream"): OpenApiTypes.STR},
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, EventStreamRenderer])
    def stream(self, request: Request, pk=None) -> StreamingHttpResponse:
        """The spec's events as Server-Sent Events, live: `id:` the sequence, `event:` the type,
        `data:` the event as JSON (as in `events`). Resume with `Last-Event-ID` or `?after=N`;
        a comment every few seconds keeps idle connections open; after a settled spec's last
        event (completed with its pull request step done, failed, cancelled) an `end` event
        closes the stream. (Served by WSGI instead of ASGI, it sends the events there are and
        ends; the client reconnects.)"""
        spec = self.get_object()
        header = request.headers.get("Last-Event-ID")
        if header is not None and header.strip():
            after = _non_negative_int(request, "Last-Event-ID", 0, raw=header.strip())
        else:
            after = _non_negative_int(request, "after", 0)
        if isinstance(request._request, ASGIRequest):
            body = spec_event_stream(
                spec_id=spec.pk, after=after, latest=last_sequence(spec_id=spec.pk), settled=selectors.specs_settled
            )
        else:
            # WSGI holds a thread per response: send what there is, and let the client reconnect.
            body = spec_event_snapshot(spec_id=spec.pk, after=after, settled=selectors.specs_settled)
        response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response

    @extend_schema(responses={200: TranscriptsPage})
    @action(detail=True, methods=["get"])
    def transcripts(self, request: Request, pk=None) -> Response:
        """The planning conversations of the spec: system prompt and messages of each phase run."""
        spec = self.get_object()
        runs = selectors.spec_transcripts(spec_id=spec.pk)
        return Response({"results": TranscriptSerializer(runs, many=True).data})

    @extend_schema(request=RequirementUpdateSerializer, responses={200: RequirementSerializer, **error_responses(409)})
    @action(detail=True, methods=["patch"], url_path=r"requirements/(?P<key>[^/]+)")
    def requirement(self, request: Request, pk=None, key: str = "") -> Response:
        """Edit a requirement (same validation as the planner's); then POST replan to carry it
        into the design and tasks."""
        spec = self.get_object()
        serializer = RequirementUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        get_object_or_404(SpecRequirement, spec=spec, key=key)
        try:
            requirement = spec_requirement_update(
                spec_id=spec.pk, key=key, user=request.user, changes=serializer.validated_data
            )
        except SpecConflict as error:
            raise Conflict(error.reason, extra={"status": spec.status}) from error
        except RequirementInvalid as error:
            raise ValidationError({"requirement": error.problems}) from error
        return Response(RequirementSerializer(requirement).data)
