"""Driving a ticket's tasks: one step at a time under the ticket's lease (dispatch), agent runs one
model turn per step (runs), the host's verification of an agent's work (verification), the host's
own steps (host_steps), how work ends (outcomes), and the reconciler's rules (reconcile).

    ticket_step ─▶ progression (inline) ─▶ start the next task
        planned document  taken from the spec, inline
        agent task        run begins in the ticket's sandbox; one model turn per step; `finish` makes
                          the host run the tests: pass → commit inside the sandbox, bundle into the
                          ticket branch, task complete; fail → the output goes back to the model, a
                          bounded number of times, then the ticket is BLOCKED with the evidence
        host task         the test run (TESTING) or the merge (DEPLOYMENT)
"""

from tickets.services.execution.dispatch import next_action, ticket_step, ticket_work_enqueue
from tickets.services.execution.host_steps import task_mode
from tickets.services.execution.outcomes import task_give_up

__all__ = ["next_action", "task_give_up", "task_mode", "ticket_step", "ticket_work_enqueue"]
