"""The pages. Forms are validated by the REST API's own serializers (one place for each rule) and
acted on by the same services the API calls; a refusal shows the service's reason. Every page
needs a login, and another user's object is a 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from specs.serializers import SpecLaunchSerializer
from specs.services.planning import SpecConflict, spec_approve, spec_cancel, spec_launch, spec_replan, spec_retry
from tickets.errors import ProjectNameTaken
from tickets.serializers import ProjectSerializer
from tickets.services import project_create
from web import pages

CONTROLS = {
    "approve": (spec_approve, "Approved: its tasks become tickets."),
    "cancel": (spec_cancel, "Cancelled."),
    "retry": (spec_retry, "Resumed where it failed."),
    "replan": (spec_replan, "Re-planning design and tasks."),
}
SPEC_PARTS = {"summary": "web/_spec_summary.html", "details": "web/_spec_details.html"}
PROJECT_FIELDS = ("name", "repository", "default_branch", "github_repo", "test_command")


def _stream(spec_id: int, after: int) -> dict[str, str | int]:
    """What a page's script needs to follow a spec's events from where the page was read."""
    return {"spec": spec_id, "url": f"{reverse('spec-stream', args=[spec_id])}?after={after}", "after": after}


def _errors(serializer_errors) -> dict[str, list[str]]:
    return {field: [str(message) for message in messages_] for field, messages_ in serializer_errors.items()}


@login_required
@require_http_methods(["GET", "POST"])
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
@require_http_methods(["GET", "POST"])
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
@require_GET
def project_board(request: HttpRequest, pk: int) -> HttpResponse:
    project = pages.project_for(request.user, pk)
    streams = [_stream(item["spec"], item["after"]) for item in pages.project_streams(project)]
    context = {**pages.board_page(project=project), "streams": streams}
    return render(request, "web/board.html", context)


@login_required
@require_GET
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
    return context


@login_required
@require_GET
def spec(request: HttpRequest, pk: int) -> HttpResponse:
    spec = pages.spec_for(request.user, pk)
    context = _spec_context(request, spec)
    return render(request, "web/spec.html", context)


@login_required
@require_GET
def spec_body(request: HttpRequest, pk: int) -> HttpResponse:
    """A part of the spec page alone (?part=summary or details; both without it): fetched again
    by the page when the spec's events say it changed."""
    spec = pages.spec_for(request.user, pk)
    template = SPEC_PARTS.get(request.GET.get("part", ""), "web/_spec_body.html")
    return render(request, template, pages.spec_page(spec))


@login_required
@require_GET
def spec_board(request: HttpRequest, pk: int) -> HttpResponse:
    spec = pages.spec_for(request.user, pk)
    context = _spec_context(request, spec)
    return render(request, "web/spec_board.html", context)


@login_required
@require_GET
def spec_board_cards(request: HttpRequest, pk: int) -> HttpResponse:
    spec = pages.spec_for(request.user, pk)
    return render(request, "web/_board.html", pages.board_page(project=spec.project, spec=spec))


@login_required
@require_POST
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


@login_required
@require_GET
def run(request: HttpRequest, pk: int) -> HttpResponse:
    run = pages.run_for(request.user, pk)
    context = pages.run_page(run)
    context["streams"] = [_stream(run.spec_id, context["after"])] if run.spec_id and context["live"] else []
    return render(request, "web/run.html", context)


@login_required
@require_GET
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
