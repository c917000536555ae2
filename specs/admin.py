"""Admin for the planning domain. Status, phase and the planned rows are read-only here: a spec is
launched through the API or the CLI, requirements are edited through the API (validated like the
model's output), and the controls (approve, retry, cancel, re-plan) are admin actions that call
the planning services, which report refusals as messages."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from omoi.admin import ModelAdmin, ReadOnlyInline, pretty_json
from sandboxes.models import AgentRun
from specs.evidence import criterion_evidence_html
from specs.models import (
    Spec,
    SpecAcceptanceCriterion,
    SpecRequirement,
    SpecTask,
    SpecTaskDependency,
    SpecTaskRequirement,
)
from specs.services.planning import SpecConflict, spec_approve, spec_cancel, spec_replan, spec_retry


class ReadOnlyAdmin(ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class RequirementInline(ReadOnlyInline):
    model = SpecRequirement
    fields = ["key", "title", "ears_type", "priority", "text", "criteria_list"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("criteria")

    @admin.display(description="acceptance criteria and their evidence")
    def criteria_list(self, requirement: SpecRequirement) -> str:
        return format_html_join(
            "",
            '<div style="margin-bottom: 0.5em">{} {}{}</div>',
            (("✓" if c.verified else "·", c.text, criterion_evidence_html(c)) for c in requirement.criteria.all()),
        )


class TaskInline(ReadOnlyInline):
    model = SpecTask
    fields = ["key", "title", "phase", "priority", "status", "estimate_hours", "depends_on", "covers", "ticket_link"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("ticket").prefetch_related("dependencies", "requirements")

    @admin.display(description="depends on")
    def depends_on(self, task: SpecTask) -> str:
        return ", ".join(sorted(d.key for d in task.dependencies.all())) or "-"

    @admin.display(description="requirements")
    def covers(self, task: SpecTask) -> str:
        return ", ".join(sorted(r.key for r in task.requirements.all())) or "-"

    @admin.display(description="ticket")
    def ticket_link(self, task: SpecTask) -> str:
        ticket = getattr(task, "ticket", None)
        if ticket is None:
            return "-"
        return format_html('<a href="{}">#{}</a>', reverse("admin:tickets_ticket_change", args=[ticket.pk]), ticket.pk)


class PlanningRunInline(ReadOnlyInline):
    model = AgentRun
    verbose_name = "planning conversation"
    verbose_name_plural = "planning conversations (open one to read its transcript)"
    fields = ["phase", "status", "turns", "input_tokens", "output_tokens", "cost_usd", "stop_reason", "started_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind="planning")


@admin.register(Spec)
class SpecAdmin(ModelAdmin):
    list_display = ["title", "project", "user", "status", "current_phase", "progress", "require_approval", "created_at"]
    list_filter = ["status", "current_phase", "require_approval", "project"]
    search_fields = ["title", "idea", "project__name", "user__username"]
    list_select_related = ["project", "user"]
    date_hierarchy = "created_at"
    fields = [
        "title",
        "idea",
        "project",
        "user",
        "status",
        "current_phase",
        "progress",
        "require_approval",
        "approved_at",
        "approved_by",
        "phase_attempts",
        "phase_started_at",
        "branch_pushed_at",
        "last_error",
        "exploration",
        "design_document",
        "branch_name",
        "pull_request_url",
        "pull_request_number",
        "completed_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [name for name in fields if name not in ("title", "idea")]
    inlines = [RequirementInline, TaskInline, PlanningRunInline]
    actions = ["approve", "retry", "cancel", "replan"]

    def has_add_permission(self, request) -> bool:
        return False  # specs are launched through the API or `manage.py omoi launch`

    @admin.display(description="exploration")
    def exploration(self, spec: Spec) -> str:
        return pretty_json(spec.phase_data.get("explore", {}))

    @admin.display(description="design")
    def design_document(self, spec: Spec) -> str:
        return pretty_json(spec.design)

    def _control(self, request, queryset, service, done: str) -> None:
        succeeded = 0
        for spec in queryset:
            try:
                service(spec_id=spec.pk, user=request.user)
                succeeded += 1
            except SpecConflict as error:
                self.message_user(request, f"Spec #{spec.pk} {spec.title}: {error.reason}", messages.ERROR)
        if succeeded:
            self.message_user(request, f"{succeeded} spec(s) {done}.", messages.SUCCESS)

    @admin.action(description="Approve the selected specs (their tasks become tickets)")
    def approve(self, request, queryset) -> None:
        self._control(request, queryset, spec_approve, "approved")

    @admin.action(description="Retry the selected failed specs at their failed phase")
    def retry(self, request, queryset) -> None:
        self._control(request, queryset, spec_retry, "resumed")

    @admin.action(description="Cancel the selected specs")
    def cancel(self, request, queryset) -> None:
        self._control(request, queryset, spec_cancel, "cancelled")

    @admin.action(description="Re-plan the selected specs (design and tasks again, re-synced by key)")
    def replan(self, request, queryset) -> None:
        self._control(request, queryset, spec_replan, "re-planning")


class CriterionInline(ReadOnlyInline):
    model = SpecAcceptanceCriterion
    fields = ["position", "text", "verified", "verified_at", "evidence_shown"]
    readonly_fields = fields
    show_change_link = False

    @admin.display(description="evidence")
    def evidence_shown(self, criterion: SpecAcceptanceCriterion) -> str:
        return criterion_evidence_html(criterion)


@admin.register(SpecRequirement)
class SpecRequirementAdmin(ReadOnlyAdmin):
    list_display = ["key", "title", "spec", "ears_type", "priority", "criteria_count"]
    list_filter = ["ears_type", "priority"]
    search_fields = ["key", "title", "text", "spec__title"]
    list_select_related = ["spec"]
    inlines = [CriterionInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(criteria_total=Count("criteria"))

    @admin.display(description="criteria", ordering="criteria_total")
    def criteria_count(self, requirement) -> int:
        return requirement.criteria_total


@admin.register(SpecAcceptanceCriterion)
class SpecAcceptanceCriterionAdmin(ReadOnlyAdmin):
    list_display = ["requirement", "position", "text", "verified", "verified_at"]
    list_filter = ["verified"]
    search_fields = ["text", "requirement__key", "requirement__spec__title"]
    list_select_related = ["requirement"]
    fields = ["requirement", "position", "text", "verified", "verified_at", "evidence_shown", "evidence"]
    readonly_fields = fields

    @admin.display(description="evidence")
    def evidence_shown(self, criterion: SpecAcceptanceCriterion) -> str:
        return criterion_evidence_html(criterion)


class DependencyLinkInline(ReadOnlyInline):
    model = SpecTaskDependency
    fk_name = "task"
    fields = ["depends_on"]
    readonly_fields = fields
    show_change_link = False
    verbose_name_plural = "depends on"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("task", "depends_on")


class RequirementLinkInline(ReadOnlyInline):
    model = SpecTaskRequirement
    fields = ["requirement"]
    readonly_fields = fields
    show_change_link = False
    verbose_name_plural = "covers requirements"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("task", "requirement")


@admin.register(SpecTask)
class SpecTaskAdmin(ReadOnlyAdmin):
    list_display = ["key", "title", "spec", "phase", "priority", "status", "estimate_hours"]
    list_filter = ["phase", "priority", "status"]
    search_fields = ["key", "title", "description", "spec__title"]
    list_select_related = ["spec"]
    inlines = [DependencyLinkInline, RequirementLinkInline]
