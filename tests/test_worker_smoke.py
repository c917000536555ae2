import pytest

from sandboxes.models import SandboxEvent
from sandboxes.tasks import event_ping_task
from tests.worker import wait_for


@pytest.mark.worker
def test_a_real_worker_runs_a_task(start_worker):
    worker = start_worker()
    event_ping_task.delay("hello")
    event = wait_for(lambda: SandboxEvent.objects.filter(type="system.ping").first(), worker=worker, message="ping")
    assert event.payload == {"message": "hello"}


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_database_connection_from_task_to_task():
    """Celery's Django fixup closes every connection around each task unless CELERY_DB_REUSE_MAX is
    set: each hop then paid for a new PostgreSQL connection. With it set, Django's own rule
    applies around each task: a connection is kept until CONN_MAX_AGE, then closed."""
    from types import SimpleNamespace

    from celery.fixups.django import DjangoWorkerFixup
    from django.db import connection

    from omoi.celery import _connections_checked, app

    fixup = DjangoWorkerFixup(app)
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    connection.ensure_connection()
    opened = connection.connection
    for _ in range(3):  # three tasks, each with Celery's and Omoi's handlers around it
        fixup.on_task_prerun(sender=task)
        _connections_checked()
        SandboxEvent.objects.exists()
        fixup.on_task_postrun(sender=task)
        _connections_checked()
    assert connection.connection is opened

    connection.close_at = 0  # past its CONN_MAX_AGE: the next task starts on a new connection
    _connections_checked()
    assert connection.connection is None
