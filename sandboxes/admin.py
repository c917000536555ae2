import json
from typing import Any

from django.contrib import admin, messages
from django.utils.html import format_html

from omoi.admin import ModelAdmin
from sandboxes.models import AgentRun, AgentRunStatus, Sandbox, SandboxEvent
from sandboxes.selectors import run_transcript
from sandboxes.services.agent import agent_run_finish
from sandboxes.services.sandbox import sandbox_release


def transcript_text(system_prompt: str, messages_: list[dict[str, Any]]) -> str:
    """A transcript in the Messages API shape as plain text, for reading."""
    lines = [f"=== system ===\n{system_prompt}"] if system_prompt else []
    for number, message in enumerate(messages_, start=1):
        lines.append(f"=== {number}. {message.get('role', '?')} ===")
        content = message.get("content")
        if isinstance(content, str):
            lines.append(content)
            continue
        for block in content or []:
            kind = block.get("type")
            if kind == "text":
                lines.append(block.get("text", ""))
            elif kind == "tool_use":
                lines.append(
                    f"→ {block.get('name')} [{block.get('id')}] "
                    f"{json.dumps(block.get('input'), indent=2, ensure_ascii=False)}"
                )
            elif kind == "tool_result":
                flag = " (error)" if block.get("is_error") else ""
                result = block.get("content")
                if not isinstance(result, str):
                    result = json.dumps(result, indent=2, ensure_ascii=False)
                lines.append(f"← result [{block.get('tool_use_id')}]{flag}\n{result}")
            else:
                lines.append(json.dumps(block, indent=2, ensure_ascii=False))
    return "\n".join(lines)


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Sandbox)
class SandboxAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = [
        "id",
        "provider",
        "status",
        "spec",
        "task",
        "branch",
        "base_branch",
        "last_activity_at",
        "created_at",
    ]
    list_filter = ["status", "provider"]
    search_fields = ["branch", "base_branch", "external_id", "workspace_path"]
    list_select_related = ["spec", "task"]
    raw_id_fields = ["spec", "task"]
    actions = ["release_sandboxes"]

    @admin.action(description="Release the selected sandboxes (remove their workspaces)")
    def release_sandboxes(self, request, queryset) -> None:
        for sandbox in queryset:
            sandbox_release(sandbox_id=sandbox.pk)
        self.message_user(request, f"Released {queryset.count()} sandbox(es).", messages.SUCCESS)


@admin.register(AgentRun)
class AgentRunAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["id", "kind", "phase", "status", "spec", "task", "turns", "cost_usd", "started_at", "finished_at"]
    list_filter = ["kind", "status", "phase"]
    search_fields = ["phase", "stop_reason", "error"]
    list_select_related = ["spec", "task"]
    exclude = ["system_prompt", "pending_tool_results"]
    readonly_fields = [
        "kind",
        "status",
        "spec",
        "task",
        "phase",
        "sandbox",
        "turns",
        "verifications",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "stop_reason",
        "result",
        "error",
        "started_at",
        "updated_at",
        "finished_at",
        "transcript",
    ]
    actions = ["cancel_runs"]

    @admin.display(description="Transcript")
    def transcript(self, run: AgentRun) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap; max-width: 120ch">{}</pre>',
            transcript_text(run.system_prompt, run_transcript(run=run)),
        )

    @admin.action(description="Cancel the selected runs")
    def cancel_runs(self, request, queryset) -> None:
        for run in queryset.filter(status__in=[AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING]):
            agent_run_finish(run_id=run.pk, status=AgentRunStatus.CANCELLED, stop_reason="cancelled in the admin")
        self.message_user(request, "Cancelled the running runs among the selection.", messages.SUCCESS)


@admin.register(SandboxEvent)
class SandboxEventAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["id", "sequence", "type", "spec", "ticket", "task", "sandbox", "created_at"]
    list_filter = ["type", "created_at"]
    search_fields = ["type", "payload"]
    list_select_related = ["spec", "ticket", "task", "sandbox"]
    readonly_fields = ["type", "sequence", "spec", "ticket", "task", "sandbox", "payload", "created_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
