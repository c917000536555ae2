"""Admin for the execution domain. Phase and status are read-only here: changing them is an admin
action that calls the workflow services, which report refusals as messages."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet

from omoi.admin import ModelAdmin, ReadOnlyInline
from omoi.secrets import secret_encrypt
from tickets import services
from tickets.errors import TicketError
from tickets.models import (
    BlockedReason,
    Phase,
    PhaseGateArtifact,
    PhaseGateResult,
    PhaseHistory,
    Project,
    Task,
    Ticket,
    TicketDependency,
)
from tickets.repository_policy import RepositoryRefused, branch_name_check, repository_check, repository_reach
from tickets.workflow import next_phase


def _actor(request) -> str:
    return f"admin:{request.user.get_username()}"


class TaskInline(ReadOnlyInline):
    model = Task
    fields = ["phase", "task_type", "executor", "status", "attempts", "started_at", "completed_at", "error"]
    readonly_fields = fields


class PhaseHistoryInline(ReadOnlyInline):
    model = PhaseHistory
    fields = ["created_at", "from_phase", "to_phase", "actor", "reason"]
    readonly_fields = fields
    show_change_link = False


class PhaseGateResultInline(ReadOnlyInline):
    model = PhaseGateResult
    fields = ["validated_at", "phase", "status", "blocking_reasons", "validated_by"]
    readonly_fields = fields


class PhaseGateArtifactInline(ReadOnlyInline):
    model = PhaseGateArtifact
    fields = ["collected_at", "phase", "artifact_type", "path", "collected_by"]
    readonly_fields = fields


class DependencyInline(admin.TabularInline):
    model = TicketDependency
    fk_name = "ticket"
    extra = 0
    raw_id_fields = ["depends_on"]
    verbose_name = "dependency"
    verbose_name_plural = "dependencies (this ticket waits for them to be DONE)"


class ProjectAdminForm(forms.ModelForm):
    """The admin's project form: the same repository policy as the API and the command line,
    and a write-only field for the project's own GitHub token."""

    github_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The project's own GitHub token, stored encrypted. Leave empty to keep the current one.",
    )
    clear_github_token = forms.BooleanField(required=False, help_text="Remove the project's own token.")

    class Meta:
        model = Project
        fields = [
            "name",
            "owner",
            "members",
            "repository",
            "default_branch",
            "github_repo",
            "test_command",
            "setup_command",
            "network_allowed",
        ]

    def clean_default_branch(self) -> str:
        try:
            return branch_name_check((self.cleaned_data.get("default_branch") or "main").strip())
        except RepositoryRefused as error:
            raise forms.ValidationError(str(error)) from error

    def clean_repository(self) -> str:
        try:
            return repository_check((self.cleaned_data.get("repository") or "").strip())
        except RepositoryRefused as error:
            raise forms.ValidationError(str(error)) from error

    def clean(self) -> dict:
        cleaned = super().clean()
        repository, branch = cleaned.get("repository"), cleaned.get("default_branch")
        unchanged = self.instance.pk and not {"repository", "default_branch"} & set(self.changed_data)
        if repository and branch and not unchanged:
            try:
                repository_reach(repository, default_branch=branch)
            except RepositoryRefused as error:
                self.add_error("repository", str(error))
        return cleaned


@admin.register(Project)
class ProjectAdmin(ModelAdmin):
    form = ProjectAdminForm
    list_display = [
        "id",
        "name",
        "owner",
        "repository",
        "default_branch",
        "github_repo",
        "network_allowed",
        "has_own_token",
        "created_at",
    ]
    list_select_related = ["owner"]
    search_fields = ["name", "repository", "github_repo", "owner__username"]
    filter_horizontal = ["members"]
    raw_id_fields = ["owner"]

    @admin.display(boolean=True, description="own token")
    def has_own_token(self, project: Project) -> bool:
        return bool(project.github_token_encrypted)

    def save_model(self, request, obj: Project, form, change) -> None:
        if form.cleaned_data.get("clear_github_token"):
            obj.github_token_encrypted = ""
        elif form.cleaned_data.get("github_token"):
            obj.github_token_encrypted = secret_encrypt(form.cleaned_data["github_token"].strip())
        super().save_model(request, obj, form, change)


@admin.register(Ticket)
class TicketAdmin(ModelAdmin):
    list_display = ["id", "title", "project", "spec", "phase", "priority", "is_blocked"]
    list_select_related = ["project", "spec"]
    list_filter = ["project", "phase", ("blocked_reason", admin.EmptyFieldListFilter), "blocked_reason", "priority"]
    search_fields = ["title", "description", "spec_task__key"]
    raw_id_fields = ["project", "user", "spec", "spec_task"]
    readonly_fields = [
        "phase",
        "previous_phase",
        "blocked_reason",
        "blocked_message",
        "context",
        "context_summary",
        "context_updated_at",
        "created_at",
        "updated_at",
    ]
    inlines = [DependencyInline, TaskInline, PhaseHistoryInline, PhaseGateResultInline, PhaseGateArtifactInline]
    actions = ["move_to_next_phase", "block", "unblock"]

    @admin.display(boolean=True, description="blocked", ordering="blocked_reason")
    def is_blocked(self, ticket: Ticket) -> bool:
        return ticket.phase == Phase.BLOCKED

    def _each(self, request, queryset: QuerySet[Ticket], verb: str, move) -> None:
        done = 0
        for ticket in queryset.order_by("id"):
            try:
                move(ticket)
                done += 1
            except TicketError as error:
                self.message_user(request, f"#{ticket.pk} {ticket.title}: {error}", level=messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} ticket(s).", level=messages.SUCCESS)

    @admin.action(description="Move to next phase")
    def move_to_next_phase(self, request, queryset: QuerySet[Ticket]) -> None:
        def move(ticket: Ticket) -> None:
            target = next_phase(ticket.phase)
            if target is None:
                raise TicketError(f"{ticket.phase} has no next phase (unblock a blocked ticket instead)")
            services.ticket_transition(ticket_id=ticket.pk, to=target, actor=_actor(request), reason="admin action")

        self._each(request, queryset, "Moved", move)

    @admin.action(description="Block")
    def block(self, request, queryset: QuerySet[Ticket]) -> None:
        self._each(
            request,
            queryset,
            "Blocked",
            lambda ticket: services.ticket_block(
                ticket_id=ticket.pk,
                reason=BlockedReason.OTHER,
                message=f"blocked from the admin by {request.user.get_username()}",
                actor=_actor(request),
            ),
        )

    @admin.action(description="Unblock")
    def unblock(self, request, queryset: QuerySet[Ticket]) -> None:
        self._each(
            request,
            queryset,
            "Unblocked",
            lambda ticket: services.ticket_unblock(ticket_id=ticket.pk, actor=_actor(request), reason="admin action"),
        )


@admin.register(Task)
class TaskAdmin(ModelAdmin):
    list_display = ["id", "task_type", "ticket", "phase", "executor", "status", "attempts", "updated_at"]
    list_select_related = ["ticket"]
    list_filter = ["status", "phase", "executor", "task_type"]
    search_fields = ["title", "task_type", "ticket__title"]
    raw_id_fields = ["ticket"]
    readonly_fields = ["status", "attempts", "started_at", "completed_at", "error", "created_at", "updated_at"]
    actions = ["retry"]

    @admin.action(description="Retry (failed or cancelled tasks)")
    def retry(self, request, queryset: QuerySet[Task]) -> None:
        done = 0
        for task in queryset.order_by("id"):
            try:
                services.task_retry(task_id=task.pk, actor=_actor(request))
                done += 1
            except TicketError as error:
                self.message_user(request, f"task #{task.pk}: {error}", level=messages.ERROR)
        if done:
            self.message_user(request, f"Returned {done} task(s) to pending.", level=messages.SUCCESS)


@admin.register(PhaseHistory)
class PhaseHistoryAdmin(ModelAdmin):
    list_display = ["id", "ticket", "from_phase", "to_phase", "actor", "created_at"]
    list_select_related = ["ticket"]
    list_filter = ["to_phase", "from_phase"]
    search_fields = ["ticket__title", "actor", "reason"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(PhaseGateArtifact)
class PhaseGateArtifactAdmin(ModelAdmin):
    list_display = ["id", "ticket", "phase", "artifact_type", "path", "collected_by", "collected_at"]
    list_select_related = ["ticket"]
    list_filter = ["phase", "artifact_type"]
    search_fields = ["ticket__title", "artifact_type", "path", "collected_by"]
    raw_id_fields = ["ticket"]


@admin.register(PhaseGateResult)
class PhaseGateResultAdmin(ModelAdmin):
    list_display = ["id", "ticket", "phase", "status", "validated_by", "validated_at"]
    list_select_related = ["ticket"]
    list_filter = ["phase", "status"]
    search_fields = ["ticket__title", "validated_by"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
