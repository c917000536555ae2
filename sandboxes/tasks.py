from celery import shared_task

from sandboxes.services.events import event_record


@shared_task(name="sandboxes.tasks.event_ping_task")
def event_ping_task(message: str) -> None:
    """A trivial round trip through the broker and a worker: records a `system.ping` event."""
    event_record(type="system.ping", payload={"message": message})
