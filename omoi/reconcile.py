"""The reconciler: one beat task that derives from the database everything that should be moving
and is not, and sets it moving again. It is the only recovery path; the broker is a fast path.

Each app registers its rules (in its AppConfig.ready): a rule looks at its own tables and returns
the (kind, object id) steps that are due but have no lease row (a message lost before any worker
saw it), or does a small repair itself (releasing a sandbox nobody holds). Then every lease whose
holder died (expired) or whose message was lost (waiting too long) is sent again, and the work of
dead nodes is handed to the living through the registered node-lost hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from omoi.leases import lease_resend, leases_due, work_enqueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    name: str
    find: Callable[[], Iterable[tuple[str, int]]]


RULES: list[Rule] = []
# Called with the names of nodes that stopped beating, before leases are re-sent.
NODE_LOST_HOOKS: list[Callable[[set[str]], int]] = []
# Repairs that are not steps (release a sandbox nobody holds...): each returns how many it made.
REPAIRS: list[tuple[str, Callable[[], int]]] = []


def reconcile() -> dict[str, int]:
    """One pass. Returns what it did, by rule, for logs and tests."""
    from omoi.models import WorkerNode
    from omoi.nodes import nodes_alive

    counts: dict[str, int] = {}
    alive = nodes_alive()
    known = set(WorkerNode.objects.values_list("name", flat=True))
    dead = known - alive
    if dead:
        for hook in NODE_LOST_HOOKS:
            counts[f"node_lost:{hook.__name__}"] = hook(dead)
    for name, repair in REPAIRS:
        counts[name] = repair()
    for rule in RULES:
        found = 0
        for kind, object_id in rule.find():
            with transaction.atomic():
                if work_enqueue(kind=kind, object_id=object_id):
                    found += 1
        counts[rule.name] = found
    resent = 0
    for lease in leases_due(now=timezone.now()):
        lease_resend(lease)
        resent += 1
    counts["leases_resent"] = resent
    if any(counts.values()):
        logger.info("reconcile: %s", {k: v for k, v in counts.items() if v})
    return counts
