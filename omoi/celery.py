"""The Celery application. Its configuration lives in the top-level celeryconfig.py."""

import os

from celery import Celery
from celery.signals import celeryd_after_setup, task_postrun, task_prerun, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")

app = Celery("omoi")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["omoi", "sandboxes", "tickets", "specs"])


@task_prerun.connect
@task_postrun.connect
def _connections_checked(**kwargs) -> None:
    """Around each task, as Django does around each request: a connection past CONN_MAX_AGE or
    broken by an error is closed, and the next use of a kept one checks it first (health checks).
    (Celery's own fixup would close every connection each time: celeryconfig sets
    CELERY_DB_REUSE_MAX to stop it.)"""
    from django.db import close_old_connections

    close_old_connections()


@celeryd_after_setup.connect
def _node_queue(sender: str, instance, **kwargs) -> None:
    """Each worker also consumes a queue of its own (steps that need its local disk go there)."""
    from omoi.nodes import node_queue, node_set

    node_set(sender)
    instance.app.amqp.queues.select_add(node_queue(sender))


@worker_ready.connect
def _node_ready(sender, **kwargs) -> None:
    from omoi.nodes import current_node, node_started, start_node_heartbeat

    name = current_node()
    if name:
        node_started(name)
        start_node_heartbeat(name)


def queues_purge() -> None:
    """Drop every message waiting in Omoi's queues (a fresh demo or test run starts empty)."""
    with app.connection_for_write() as connection:
        for queue in app.conf.task_queues:
            try:
                connection.default_channel.queue_purge(queue.name)
            except Exception:  # a queue that was never declared has nothing to purge
                pass
