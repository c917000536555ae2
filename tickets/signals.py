"""Signals the tickets app sends so that a higher app (specs) can react without being imported.
Receivers should only enqueue a Celery task by id.
"""

from django.dispatch import Signal

# Sent once a ticket's move to DONE has committed, with `ticket_id` and `spec_id` (None for a
# ticket made by hand). Sent by tickets.services.transitions.ticket_transition.
ticket_completed = Signal()

# Sent on commit when the host gives up on a ticket's task (failing checks after the last
# verification, a merge conflict, an exhausted budget, a broken environment) and blocks the
# ticket, with `ticket_id`, `spec_id`, `reason` (a BlockedReason) and `message`.
ticket_blocked = Signal()
