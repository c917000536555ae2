"""The pages. Forms are validated by the REST API's own serializers (one place for each rule) and
acted on by the same services the API calls; a refusal shows the service's reason. Every page
needs a login, and another user's object is a 404."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from specs.serializers import BudgetSerializer, SpecLaunchSerializer
from specs.services.planning import (
    SpecConflict,
    spec_approve,
    spec_budget_set,
    spec_cancel,
    spec_launch,
    spec_message_send,
    spec_replan,
    spec_retry,
)
from tickets.errors import InvalidTaskState, ProjectNameTaken
from tickets.serializers import MessageCreateSerializer, ProjectSerializer
from tickets.services import project_create
from tickets.services.messages import task_message_send
from web import pages

CONTROLS = {
    "approve": (spec_approve, "Approved: its tasks become tickets."),
    "cancel": (spec_cancel, "Cancelled."),
    "retry": (spec_retry, "Resumed where it failed."),
    "replan": (spec_replan, "Re-planning design and tasks."),
}
SPEC_PARTS = {
    "summary": "web/_spec_summary.html",
    "details": "web/_spec_details.html",
    "messages": "web/_steering.html",
}
PROJECT_FIELDS = ("name", "repository", "default_branch", "github_repo", "test_command")


def allow(*methods: str) -> Callable:
    """require_http_methods, with the methods kept on the view as `http_methods` (the authorization
    matrix, tests/test_authorization_matrix.py, reads them to list every route and method)."""

    def decorate(view: Callable) -> Callable:
        checked = require_http_methods(list(methods))(view)
        checked.http_methods = [method.lower() for method in methods]
        return checked

    return decorate


def _stream(spec_id: int, after: int) -> dict[str, str | int]:
    """What a page's script needs to follow a spec's events from where the page was read."""
    return {"spec": spec_id, "url": f"{reverse('spec-stream', args=[spec_id])}?after={after}", "after": after}


def _errors(serializer_errors) -> dict[str, list[str]]:
    return {field: [str(message) for message in messages_] for field, messages_ in serializer_errors.items()}


@login_required
@allow("GET", "POST")
def projects(request: HttpRequest) -> HttpResponse:
    """Your projects, and a form to add one (validated like POST /api/v1/projects)."""
    values = {field: "" for field in PROJECT_FIELDS}
    values["default_branch"] = "main"
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        values = {field: request.POST.get(field, "") for field in PROJECT_FIELDS}
        data = {field: value for field, value in values.items() if field != "default_branch" or value.strip()}
        serializer = ProjectSerializer(data=data)
        if serializer.is_valid():
            try:
                project = project_create(owner=request.user, **serializer.validated_data)
            except ProjectNameTaken as error:
                errors = {"name": [str(error)]}
            else:
                messages.success(request, f"Project {project.name} created.")
                return redirect("web:project", pk=project.pk)
        else:
            errors = _errors(serializer.errors)
    context = {"projects": pages.projects_page(request.user), "values": values, "errors": errors}
    return render(request, "web/projects.html", context, status=400 if errors else 200)


@login_required
@allow("GET", "POST")
def project(request: HttpRequest, pk: int) -> HttpResponse:
    """A project's specs, and the form that launches an idea on it (validated like
    POST /api/v1/specs/launch)."""
    project = pages.project_for(request.user, pk)
    values = {"idea": "", "title": "", "require_approval": True}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        values = {
            "idea": request.POST.get("idea", ""),
            "title": request.POST.get("title", ""),
            "require_approval": request.POST.get("require_approval") == "on",
        }
        serializer = SpecLaunchSerializer(data={**values, "project": project.pk})
        if serializer.is_valid() and serializer.validated_data["idea"].strip():
            data = serializer.validated_data
            spec = spec_launch(
                project_id=project.pk,
                user=request.user,
                idea=data["idea"],
                title=data["title"],
                require_approval=data["require_approval"],
            )
            messages.success(request, "Launched: planning starts as soon as a worker takes it.")
            return redirect("web:spec", pk=spec.pk)
        errors = _errors(serializer.errors) if serializer.errors else {"idea": ["the idea is empty"]}
    context = {
        "project": project,
        "specs": pages.project_specs(request.user, project),
        "values": values,
        "errors": errors,
    }
    return render(request, "web/project.html", context, status=400 if errors else 200)


@login_required
@allow("GET")
def project_board(request: HttpRequest, pk: int) -> HttpResponse:
    project = pages.project_for(request.user, pk)
    streams = [_stream(item["spec"], item["after"]) for item in pages.project_streams(project)]
    context = {**pages.board_page(project=project), "streams": streams}
    return render(request, "web/board.html", context)


@login_required
@allow("GET")
def project_board_cards(request: HttpRequest, pk: int) -> HttpResponse:
    project = pages.project_for(request.user, pk)
    return render(request, "web/_board.html", pages.board_page(project=project))


def _spec_context(request: HttpRequest, spec) -> dict:
    """The spec page's and its board's data; the stream starts after the sequence read first
    (before the board), so whatever happened while the page was read arrives as events."""
    board = pages.board_page(project=spec.project, spec=spec)
    context = {**board, **pages.spec_page(spec)}
    context["after"] = min(board["after"], context["after"])
    context["streams"] = [] if context["settled"] else [_stream(spec.pk, context["after"])]
    context["message_key"] = uuid.uuid4().hex
    return context


@login_required
@allow("GET")
def spec(request: HttpRequest, pk: int) -> HttpResponse:
    spec = pages.spec_for(request.user, pk)
    context = _spec_context(request, spec)
    return render(request, "web/spec.html", context)


@login_required
@allow("GET")
def spec_body(request: HttpRequest, pk: int) -> HttpResponse:
    """A part of the spec page alone (?part=summary or details; both without it): fetched again
    by the page when the spec's events say it changed."""
    spec = pages.spec_for(request.user, pk)
    part = request.GET.get("part", "")
    if part == "messages":
        return render(request, SPEC_PARTS[part], {"spec": spec, **pages.spec_steering(spec)})
    return render(request, SPEC_PARTS.get(part, "web/_spec_body.html"), pages.spec_page(spec))


@login_required
@allow("GET")
def spec_board(request: HttpRequest, pk: int) -> HttpResponse:
    spec = pages.spec_for(request.user, pk)
    context = _spec_context(request, spec)
    return render(request, "web/spec_board.html", context)


@login_required
@allow("GET")
def spec_board_cards(request: HttpRequest, pk: int) -> HttpResponse:
    spec = pages.spec_for(request.user, pk)
    return render(request, "web/_board.html", pages.board_page(project=spec.project, spec=spec))


@login_required
@allow("POST")
def spec_control(request: HttpRequest, pk: int, control: str) -> HttpResponse:
    """Approve, cancel, retry or re-plan, through the planning services the API calls."""
    if control not in CONTROLS:
        raise Http404("no such control")
    spec = pages.spec_for(request.user, pk)
    service, done = CONTROLS[control]
    try:
        service(spec_id=spec.pk, user=request.user)
    except SpecConflict as error:
        messages.error(request, f"{control.capitalize()} refused: {error.reason}")
    else:
        messages.success(request, done)
    return redirect("web:spec", pk=spec.pk)


def _message_form(request: HttpRequest) -> tuple[dict | None, str]:
    """The message form's text and idempotency key, validated like POST .../messages; or the reason
    it was refused."""
    serializer = MessageCreateSerializer(
        data={"text": request.POST.get("text", ""), "idempotency_key": request.POST.get("idempotency_key", "")}
    )
    if not serializer.is_valid():
        return None, "; ".join(str(message) for errors in serializer.errors.values() for message in errors)
    return serializer.validated_data, ""


def _message_sent(request: HttpRequest, send: Callable, refusals: tuple[type[Exception], ...]) -> None:
    """Send the form's message through `send` (a messages service), and say what came of it."""
    data, problem = _message_form(request)
    if data is None:
        messages.error(request, f"Message refused: {problem}")
        return
    try:
        message, created = send(
            text=data["text"], author=request.user.get_username(), idempotency_key=data["idempotency_key"]
        )
    except refusals as error:
        messages.error(request, f"Message refused: {getattr(error, 'reason', None) or error}")
    except ValueError as error:
        messages.error(request, f"Message refused: {error}")
    else:
        if created:
            messages.success(request, "Message queued: the agent reads it at its next turn.")
        else:
            messages.info(request, f"This form was sent already: message {message.pk} is {message.status}.")


@login_required
@allow("POST")
def spec_message(request: HttpRequest, pk: int) -> HttpResponse:
    """A message to the spec's planning agent, through the service POST /api/v1/specs/{id}/messages
    calls (delivered once, at the running phase's next turn)."""
    spec = pages.spec_for(request.user, pk)

    def send(**fields):
        return spec_message_send(spec_id=spec.pk, **fields)

    _message_sent(request, send, (SpecConflict,))
    return redirect(f"{reverse('web:spec', args=[spec.pk])}#messages")


@login_required
@allow("POST")
def spec_budget(request: HttpRequest, pk: int) -> HttpResponse:
    """Set the spec's budget, validated like POST /api/v1/specs/{id}/budget, through the same
    service. Raising it and retrying resumes work the budget stopped."""
    spec = pages.spec_for(request.user, pk)
    raw = request.POST.get("budget_usd", "").strip()
    serializer = BudgetSerializer(data={"budget_usd": raw or None})
    if not raw:
        messages.error(request, "Budget refused: enter an amount in US dollars.")
    elif not serializer.is_valid():
        problems = "; ".join(str(message) for errors in serializer.errors.values() for message in errors)
        messages.error(request, f"Budget refused: {problems}")
    else:
        spec = spec_budget_set(spec_id=spec.pk, budget_usd=serializer.validated_data["budget_usd"], user=request.user)
        messages.success(request, f"Budget set to ${spec.budget_usd}.")
    return redirect(f"{reverse('web:spec', args=[spec.pk])}#budget")


@login_required
@allow("GET")
def run(request: HttpRequest, pk: int) -> HttpResponse:
    run = pages.run_for(request.user, pk)
    context = pages.run_page(run)
    context["streams"] = [_stream(run.spec_id, context["after"])] if run.spec_id and context["live"] else []
    context["message_key"] = uuid.uuid4().hex
    return render(request, "web/run.html", context)


@login_required
@allow("GET")
def run_steering(request: HttpRequest, pk: int) -> HttpResponse:
    """The run's messages and guardian steps alone, fetched again by the run page as events arrive."""
    run = pages.run_for(request.user, pk)
    return render(request, "web/_steering.html", {"run": run, **pages.run_steering(run)})


@login_required
@allow("POST")
def run_message(request: HttpRequest, pk: int) -> HttpResponse:
    """A message to the agent of this run: to its task (tickets.services.messages.task_message_send,
    as POST /api/v1/tasks/{id}/messages) or, for a planning run, to its spec's running phase
    (spec_message_send). A finished run takes none: its page would never show the delivery."""
    run = pages.run_for(request.user, pk)
    if run.status not in pages.LIVE_RUN_STATUSES:
        messages.error(request, f"Message refused: run {run.pk} is {run.status}: it takes no more messages.")
    elif run.task_id is not None:

        def send(**fields):
            return task_message_send(task_id=run.task_id, **fields)

        _message_sent(request, send, (InvalidTaskState,))
    else:

        def send(**fields):
            return spec_message_send(spec_id=run.spec_id, **fields)

        _message_sent(request, send, (SpecConflict,))
    return redirect(f"{reverse('web:run', args=[run.pk])}#messages")


@login_required
@allow("GET")
def run_messages(request: HttpRequest, pk: int) -> HttpResponse:
    """The transcript's messages from number `from` on, fetched by the run page as events arrive."""
    run = pages.run_for(request.user, pk)
    raw = request.GET.get("from", "0")
    start = int(raw) if raw.isdigit() else 0
    context = pages.run_messages(run, start)
    response = render(request, "web/_messages.html", context)
    response["X-Message-Count"] = str(context["message_count"])
    response["X-Run-Status"] = run.status
    return response
