from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"

    def ready(self) -> None:
        from tickets.services.execution import dispatch, reconcile

        dispatch.register()
        reconcile.register()
