"""Celery configuration (read by omoi/celery.py). Connection settings come from Django settings,
which read them from the environment; everything here is policy.

Policy: JSON only; acks late with prefetch 1 so a worker killed mid-task hands the message back;
every task is idempotent, so a redelivery is safe. The Redis visibility timeout is longer than the
longest hard time limit, so a message is never redelivered while its task still runs.
"""

from django.conf import settings
from kombu import Queue

broker_url = settings.CELERY_BROKER_URL
broker_connection_retry_on_startup = True

if broker_url.startswith("filesystem://"):
    broker_transport = "omoi.broker:Transport"
    _folder = settings.CELERY_BROKER_DIR
    for _sub in ("queue", "control", "processed"):
        (_folder / _sub).mkdir(parents=True, exist_ok=True)
    broker_transport_options = {
        "data_folder_in": str(_folder / "queue"),
        "data_folder_out": str(_folder / "queue"),
        "control_folder": str(_folder / "control"),
        "processed_folder": str(_folder / "processed"),
        "store_processed": False,
        # The transport polls its folder; the default 1 s would add a second to every hop.
        "polling_interval": 0.1,
    }
else:
    broker_transport_options = {"visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT}

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_max_tasks_per_child = 200
worker_hijack_root_logger = False
worker_send_task_events = True
task_send_sent_event = True

# Every task is short: one planning phase, one agent turn, one check. The limits catch a hang.
task_soft_time_limit = 900
task_time_limit = 960

# Celery's Django fixup closes every database connection before and after each task unless this is
# set, which made each hop open a new PostgreSQL connection (5-10 ms) whatever CONN_MAX_AGE said.
# With it set, omoi/celery.py applies Django's own rule instead (CONN_MAX_AGE, health checks).
CELERY_DB_REUSE_MAX = 1_000_000

task_default_queue = "default"
task_queues = (
    Queue("planning"),
    Queue("execution"),
    Queue("events"),
    Queue("default"),
)
# A step's queue is chosen when it is sent (omoi/leases.py: the work kind's route, a node's own
# queue when the step needs that node's disk); these are the defaults.
task_routes = {
    "specs.tasks.spec_step_task": {"queue": "planning"},
    "tickets.tasks.ticket_step_task": {"queue": "execution"},
    "sandboxes.tasks.*": {"queue": "execution"},
    "*.tasks.event_*": {"queue": "events"},
}

beat_schedule: dict = {
    "omoi-reconcile": {"task": "omoi.tasks.reconcile_task", "schedule": settings.OMOI_RECONCILE_INTERVAL_S},
}
