"""Driving tasks through agent runs and host steps (owned by the execution work, issue 5).

`tasks_dispatch` is the single seam the workflow engine calls, inside its transaction, whenever
tasks become runnable (a phase entered with dependencies done, a dependency reaching DONE, tasks
generated on request). The execution work fills it in: it enqueues each task's run on commit.
"""

from collections.abc import Iterable


def tasks_dispatch(*, task_ids: Iterable[int]) -> None:
    """Schedule the given runnable tasks to run, on commit. Filled in by the execution work."""
    return None
