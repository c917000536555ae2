"""The Celery application. Its configuration lives in the top-level celeryconfig.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")

app = Celery("omoi")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["omoi", "sandboxes", "tickets", "specs"])


def queues_purge() -> None:
    """Drop every message waiting in Omoi's queues (a fresh demo or test run starts empty)."""
    with app.connection_for_write() as connection:
        for queue in app.conf.task_queues:
            try:
                connection.default_channel.queue_purge(queue.name)
            except Exception:  # a queue that was never declared has nothing to purge
                pass
