from django.contrib import admin

from omoi.models import LLMUsage


class ReadOnlyInline(admin.TabularInline):
    """An inline that shows records without letting the admin add or edit them."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LLMUsage)
class LLMUsageAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "provider",
        "model",
        "spec",
        "phase",
        "task",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cost_usd",
    ]
    list_filter = ["provider", "model", "phase", "created_at"]
    search_fields = ["model", "phase"]
    list_select_related = ["spec", "task"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "spec",
        "task",
        "agent_run",
        "phase",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "cost_usd",
        "created_at",
    ]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
