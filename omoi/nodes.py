"""Worker nodes: each Celery worker (a machine, in production) consumes a queue of its own besides
the shared ones, and beats in the database. Steps that need a node's local disk (a local sandbox)
are sent to its queue; a node that stops beating is dead, and the reconciler hands its work on.

The node is named by the worker's hostname (`celery worker -n name@host`): a worker restarted under
the same name on the same machine finds its sandboxes again; one that never comes back is declared
dead after OMOI_NODE_DEAD_S.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connections
from django.utils import timezone

logger = logging.getLogger(__name__)

_node: dict[str, str] = {}
# Jobs the node runs on its own beat, in its main process (for example: remove the local sandbox
# directories that no live sandbox row claims any more).
NODE_JOBS: list[Callable[[str], None]] = []


def node_queue(name: str) -> str:
    """The queue only node `name` consumes."""
    return "node." + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def current_node() -> str:
    """This process's node name: the worker's hostname in a worker (and its pool processes), ""
    elsewhere (the web process, the CLI, tests calling services directly), which pins nothing."""
    return _node.get("name", os.environ.get("OMOI_NODE_NAME", ""))


def node_set(name: str) -> None:
    """Name this process's node and start a new incarnation of it (inherited by pool processes)."""
    import uuid

    _node["name"] = name
    _node["incarnation"] = uuid.uuid4().hex[:8]
    os.environ["OMOI_NODE_NAME"] = name
    os.environ["OMOI_NODE_INCARNATION"] = _node["incarnation"]


def current_incarnation() -> str:
    return _node.get("incarnation", os.environ.get("OMOI_NODE_INCARNATION", ""))


def lease_owner_prefix(name: str, incarnation: str) -> str:
    return f"{name}#{incarnation}:"


def node_beat(name: str) -> None:
    from omoi.models import WorkerNode

    now = timezone.now()
    updated = WorkerNode.objects.filter(name=name).update(last_seen_at=now, pid=os.getpid())
    if not updated:
        WorkerNode.objects.update_or_create(
            name=name,
            defaults={
                "queue": node_queue(name),
                "data_dir": str(settings.DATA_DIR),
                "pid": os.getpid(),
                "started_at": now,
                "last_seen_at": now,
            },
        )


def node_started(name: str) -> None:
    """The node (re)starts: record it, and hand back at once the steps its previous incarnation held
    when it died (a restarted machine need not wait for their leases to expire)."""
    from omoi.leases import leases_of_lost_incarnations
    from omoi.models import WorkerNode

    # A node that ran before may have died holding messages it had not claimed yet; a new one not.
    restarted = WorkerNode.objects.filter(name=name).exists()
    leases_of_lost_incarnations(node=name, incarnation=current_incarnation(), restarted=restarted)
    now = timezone.now()
    WorkerNode.objects.update_or_create(
        name=name,
        defaults={
            "queue": node_queue(name),
            "data_dir": str(settings.DATA_DIR),
            "pid": os.getpid(),
            "started_at": now,
            "last_seen_at": now,
        },
    )


def start_node_heartbeat(name: str) -> threading.Event:
    """Beat every OMOI_NODE_BEAT_S from a daemon thread of the worker's main process, running the
    node's jobs after each beat. Returns the event that stops it."""
    stop = threading.Event()

    def run() -> None:
        try:
            while True:
                try:
                    node_beat(name)
                    for job in NODE_JOBS:
                        job(name)
                except Exception:  # the database restarting: beat again next time
                    logger.warning("node %s: heartbeat failed", name, exc_info=True)
                    connections.close_all()
                if stop.wait(settings.OMOI_NODE_BEAT_S):
                    return
        finally:
            connections.close_all()

    threading.Thread(target=run, name="omoi-node-heartbeat", daemon=True).start()
    return stop


def nodes_alive(*, now=None) -> set[str]:
    from datetime import timedelta

    from omoi.models import WorkerNode

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OMOI_NODE_DEAD_S)
    return set(WorkerNode.objects.filter(last_seen_at__gte=cutoff).values_list("name", flat=True))
