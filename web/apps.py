from django.apps import AppConfig


class WebConfig(AppConfig):
    """The browser application: pages over the same services and selectors as the REST API."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "web"
    verbose_name = "Web application"
