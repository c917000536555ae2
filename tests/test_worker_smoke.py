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
