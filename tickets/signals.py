"""Signals the tickets app sends so that a higher app (specs) can react without being imported.
Receivers should only enqueue a Celery task by id.
"""

from django.dispatch import Signal

# Sent once a ticket's move to DONE has committed, with `ticket_id` and `spec_id` (None for a
# ticket made by hand). Sent by tickets.services.transitions.ticket_transition.
ticket_completed = Signal()

# Sent once a ticket's move to BLOCKED has committed (failing checks after the last verification,
# a failed gate, a merge conflict, an exhausted budget, a broken environment, a move by hand), with
# `ticket_id`, `spec_id`, `reason` (a BlockedReason) and `message`. Sent by ticket_transition.
ticket_blocked = Signal()
