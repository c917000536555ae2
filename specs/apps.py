from django.apps import AppConfig


class SpecsConfig(AppConfig):
    name = "specs"

    def ready(self) -> None:
        from specs import receivers  # noqa: F401  (connects ticket_completed and ticket_blocked)
        from specs.services import steps

        steps.register()
