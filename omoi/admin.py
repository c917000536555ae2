"""Admin plumbing every app uses: JSON shown indented, and read-only inlines."""

import json

from django import forms
from django.contrib import admin
from django.db import models
from django.utils.html import format_html

from omoi.models import LLMUsage

PRETTY_SUFFIX = "_pretty"


class PrettyJSONFormField(forms.JSONField):
    """An editable JSON field whose text is indented, one key per line."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


def pretty_json(value) -> str:
    return format_html(
        '<pre class="omoi-json" style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, default=str),
    )


class PrettyJSONMixin:
    """Every JSON field of the model indented instead of one long line: a read-only one as a
    <pre> block (shown through a `<name>_pretty` display named like the field), an editable one
    in a textarea. Works for model admins and inlines, with or without change permission."""

    formfield_overrides = {
        models.JSONField: {"form_class": PrettyJSONFormField, "widget": forms.Textarea(attrs={"rows": 10, "cols": 90})}
    }

    def _json_field_names(self) -> set[str]:
        return {field.name for field in self.model._meta.concrete_fields if isinstance(field, models.JSONField)}

    def _pretty_names(self, request, obj=None) -> set[str]:
        """The JSON fields shown read-only: those listed read-only, or all of them when the user may
        not change the object; never one the admin excludes."""
        json_fields = self._json_field_names() - set(super().get_exclude(request, obj) or [])
        if not self.has_change_permission(request, obj):
            return json_fields
        return {name for name in super().get_readonly_fields(request, obj) if name in json_fields}

    def _renamed(self, names, pretty: set[str]) -> list:
        return [f"{name}{PRETTY_SUFFIX}" if isinstance(name, str) and name in pretty else name for name in names]

    def get_readonly_fields(self, request, obj=None):
        pretty = self._pretty_names(request, obj)
        names = self._renamed(super().get_readonly_fields(request, obj), pretty)
        return names + [f"{name}{PRETTY_SUFFIX}" for name in sorted(pretty) if f"{name}{PRETTY_SUFFIX}" not in names]

    def get_exclude(self, request, obj=None):
        return [*(super().get_exclude(request, obj) or []), *sorted(self._pretty_names(request, obj))]

    def get_fields(self, request, obj=None):
        return self._renamed(super().get_fields(request, obj), self._pretty_names(request, obj))

    def __getattr__(self, name: str):
        if not name.endswith(PRETTY_SUFFIX):
            raise AttributeError(name)
        field_name = name.removesuffix(PRETTY_SUFFIX)
        if field_name not in self._json_field_names():
            raise AttributeError(name)

        def show(obj) -> str:
            return pretty_json(getattr(obj, field_name))

        show.short_description = self.model._meta.get_field(field_name).verbose_name
        return show


class ModelAdmin(PrettyJSONMixin, admin.ModelAdmin):
    """The admin base of every Omoi model."""


class ReadOnlyInline(PrettyJSONMixin, admin.TabularInline):
    """An inline that shows records without letting the admin add or edit them."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LLMUsage)
class LLMUsageAdmin(ModelAdmin):
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
