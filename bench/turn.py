"""One agent turn's host work with a 30 KB and a 300 KB transcript, against the tool alone.

    python bench/turn.py [--turns 40]

A task's run whose transcript already holds ~30 KB (then ~300 KB) of earlier turns takes --turns
more turns in this process, with a zero-latency model that asks for `read_file` each time: each
turn is the whole of `agent_turn_run` as a worker runs it (the transcript read, the budget
reserved on three accounts and settled, the tool, the new messages, usage and events written in
one commit). The baseline is the same `read_file` call alone. Prints the median and p95 of both,
per transcript size, and the ratio of the medians between the two sizes (flat is 1.0). Runs
against the configured database (PostgreSQL: set DATABASE_URL), in a throwaway database.
Target: ≤ 10 ms of host work per turn, flat from 30 KB to 300 KB.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from support import bench_user, percentile, stack, throwaway_database

FILLER = "x" * 900


class ZeroLatencyModel:
    """Answers every call at once with a read_file call (a distinct id each time)."""

    name = "bench"
    model = "bench-model"

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, *, system, messages, tools, context, max_tokens=None):
        from omoi.llm.base import LLMResponse, Usage

        self.calls += 1
        call = {"type": "tool_use", "id": f"toolu_{self.calls}", "name": "read_file", "input": {"path": "notes.txt"}}
        return LLMResponse(
            content=[{"type": "text", "text": "Reading."}, call],
            stop_reason="tool_use",
            model=self.model,
            usage=Usage(input_tokens=1000, output_tokens=20, cost_usd=Decimal("0.0001")),
            provider=self.name,
        )


def padded_run(spec, task_label: str, kilobytes: int):
    """A running task run whose transcript holds about `kilobytes` KB of earlier turns."""
    from sandboxes.models import AgentMessage, AgentRun
    from sandboxes.services.agent import agent_run_start

    run = agent_run_start(
        kind="task", spec_id=spec.pk, phase="IMPLEMENTATION", system_prompt="You are careful.",
        first_message=f"{task_label}: make the change.",
    )  # fmt: skip
    rows, size, position = [], 0, 1
    while size < kilobytes * 1024:
        call_id = f"old_{position}"
        rows.append(
            AgentMessage(
                run_id=run.pk,
                position=position,
                role="assistant",
                content=[{"type": "tool_use", "id": call_id, "name": "read_file", "input": {"path": "notes.txt"}}],
            )  # fmt: skip
        )
        rows.append(
            AgentMessage(
                run_id=run.pk,
                position=position + 1,
                role="user",
                content=[{"type": "tool_result", "tool_use_id": call_id, "content": FILLER}],
            )  # fmt: skip
        )
        position += 2
        size += len(FILLER) + 150
    AgentMessage.objects.bulk_create(rows)
    AgentRun.objects.filter(pk=run.pk).update(message_count=position)
    run.refresh_from_db()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=40)
    args = parser.parse_args()

    from omoi.budgets import Account
    from sandboxes.models import AgentRun
    from sandboxes.providers.local import LocalWorkspace
    from sandboxes.services.agent import agent_turn_run
    from sandboxes.tools import EXECUTION_TOOLS, tool_execute
    from specs.models import Spec
    from tickets.models import Project

    root = Path(tempfile.mkdtemp(prefix="omoi-bench-turn-")) / "workspace"
    root.mkdir()
    (root / "notes.txt").write_text("The notes the agent reads.\n" * 20)
    workspace = LocalWorkspace(root)
    accounts = [
        Account(key="task:bench", limit_usd=Decimal("1000"), label="the task"),
        Account(key="spec:bench", limit_usd=Decimal("1000"), label="the spec"),
        Account(key="project:bench", limit_usd=Decimal("1000"), label="the project today"),
    ]
    with throwaway_database("turn"):
        user = bench_user()
        project = Project.objects.create(owner=user, name="turn", repository="/nonexistent")
        spec = Spec.objects.create(project=project, user=user, title="turn", idea="turn")
        tool_alone = []
        for _ in range(args.turns):
            started = time.perf_counter()
            tool_execute(workspace=workspace, name="read_file", tool_input={"path": "notes.txt"})
            tool_alone.append(time.perf_counter() - started)
        medians = {}
        print(f"One agent turn's host work — {stack()}, zero-latency model, {args.turns} turns per size")
        print(f"  the tool alone (read_file):        median {statistics.median(tool_alone) * 1000:6.2f} ms")
        for kilobytes in (30, 300):
            run = padded_run(spec, f"TSK-{kilobytes}", kilobytes)
            model = ZeroLatencyModel()
            times = []
            for turn in range(args.turns + 3):
                run = AgentRun.objects.get(pk=run.pk)  # as a step loads it
                started = time.perf_counter()
                outcome = agent_turn_run(
                    run=run, workspace=workspace, tools=EXECUTION_TOOLS, terminal_tools={"finish"},
                    conversation_key=f"TSK-{kilobytes}:implement_feature", provider=model, accounts=accounts,
                )  # fmt: skip
                elapsed = time.perf_counter() - started
                if outcome.kind != "continue":
                    raise RuntimeError(f"turn {turn} ended {outcome.kind!r}")
                if turn >= 3:  # the first turns warm the caches
                    times.append(elapsed)
            medians[kilobytes] = statistics.median(times)
            label = f"a turn, {kilobytes:3d} KB transcript:"
            median_ms, p95_ms = medians[kilobytes] * 1000, percentile(times, 0.95) * 1000
            ratio = medians[kilobytes] / statistics.median(tool_alone)
            print(f"  {label:<35} median {median_ms:6.2f} ms   p95 {p95_ms:6.2f} ms   ({ratio:.0f}x the tool)")
        print(f"  300 KB / 30 KB (medians): {medians[300] / medians[30]:.2f}")


if __name__ == "__main__":
    main()
