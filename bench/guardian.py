"""The guardian against scripted runs: loops of every kind it knows, and healthy runs.

    python bench/guardian.py

Each run is a spec of the sample repository whose first task's agent follows a script (the rest as
in the demo), executed in this process as a worker would, in a throwaway database. For a loop it
prints whether the guardian caught it and after how many turns (its first nudge), and whether it
then escalated and stopped the run as stuck; for a healthy run, whether the guardian disturbed it.
Target: every loop caught within 6 turns, no healthy run disturbed.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

from support import bench_user, sample_repository, stack, throwaway_database

IMPLEMENT = "TSK-001:implement_feature"


def looping(turn: dict, times: int = 14) -> list[dict]:
    return [copy.deepcopy(turn) for _ in range(times)]


def scripted_runs() -> list[tuple[str, bool, list[dict]]]:
    """(name, is_a_loop, the first task's script)."""
    from tests.e2e.conftest import sample_script

    read = {"tool": "read_file", "input": {"path": "textkit/core.py"}}
    missing = {"tool": "read_file", "input": {"path": "textkit/missing.py"}}
    listing = {"tool": "list_files", "input": {"path": "tests"}}
    failing_command = {"tool": "run_command", "input": {"command": "python3 -m unittest tests.test_missing"}}
    broken_test = "\n".join(
        [
            "import unittest",
            "",
            "",
            "class Broken(unittest.TestCase):",
            "    def test_never(self):",
            "        self.assertEqual(1, 2)",
            "",
        ]
    )
    demo = sample_script()["conversations"][IMPLEMENT]
    interleaved = []
    for index in range(7):
        interleaved += [missing, {"tool": "search", "input": {"pattern": f"def x{index}", "path": "."}}]
    exploring = [{"tool": "read_file", "input": {"path": "textkit/core.py", "start_line": n}} for n in range(1, 6)]
    return [
        ("the same read, the same answer", True, looping(read)),
        ("the same failing read", True, looping(missing)),
        ("a failing read between other calls", True, interleaved),
        ("the same failing command", True, looping(failing_command)),
        ("two calls alternating", True, [read, listing] * 7),
        ("talking without tools", True, looping({"text": "Let me think about this some more."})),
        (
            "finishing with the same failing test",
            True,
            [{"tool": "write_file", "input": {"path": "tests/test_broken.py", "content": broken_test}}]
            + looping({"tool": "finish", "input": {"summary": "Done."}}, 10),
        ),
        ("the demo's agent", False, demo),
        ("a careful agent that reads a lot first", False, [*exploring, *demo]),
        ("an agent whose first test run fails, then fixes it", False, fix_after_failure(demo)),
    ]


def fix_after_failure(demo: list[dict]) -> list[dict]:
    """Runs the tests before writing the module (they fail), then writes it and passes."""
    run_tests = {"tool": "run_command", "input": {"command": "python3 -m unittest discover -s tests"}}
    writes = [turn for turn in demo if turn.get("tool") == "write_file"]
    test_write = writes[1] if len(writes) > 1 else writes[0]
    module_write = writes[0]
    finish = demo[-1]
    return [test_write, run_tests, module_write, run_tests, finish]


def main() -> None:
    from django.conf import settings

    from sandboxes.models import AgentRun, SandboxEvent
    from specs.services.bridge import spec_execute
    from tests.e2e.conftest import planned_spec, sample_script
    from tests.support.steps import drain
    from tickets.models import Project

    root = Path(tempfile.mkdtemp(prefix="omoi-bench-guardian-"))
    settings.OMOI_REPOS_DIR = root / "repos"
    settings.OMOI_SANDBOX_ROOT = root / "sandboxes"
    settings.OMOI_LLM_PROVIDER = "replay"
    settings.OMOI_TASK_MAX_VERIFICATIONS = 10
    with throwaway_database("guardian"):
        user = bench_user()
        print(f"The guardian against scripted runs — {stack()}")
        print(f"{'run':<52} {'loop':>5} {'caught at turn':>15} {'stopped':>8} {'turns':>6}")
        caught, loops, disturbed, healthy = [], 0, 0, 0
        for number, (name, is_loop, turns) in enumerate(scripted_runs(), start=1):
            script = copy.deepcopy(sample_script())
            script["conversations"][IMPLEMENT] = turns
            path = root / f"script-{number}.json"
            path.write_text(json.dumps(script))
            settings.OMOI_REPLAY_SCRIPT = str(path)
            repository = sample_repository(root / f"repo-{number}")
            project = Project.objects.create(owner=user, name=f"guardian-{number}", repository=str(repository))
            spec = planned_spec(project=project, user=user, script=script)
            spec_execute(spec_id=spec.pk, actor="bench")
            drain(limit=300)
            run = AgentRun.objects.filter(spec=spec, task__task_type="implement_feature").order_by("id").first()
            nudge = next((entry for entry in run.guardian_log if entry["step"] == "nudge"), None)
            stopped = SandboxEvent.objects.filter(spec=spec, type="guardian.stopped").exists()
            at = nudge["turn"] + 1 if nudge else None  # it steps in before the next turn
            if is_loop:
                loops += 1
                if nudge:
                    caught.append(at)
            else:
                healthy += 1
                if nudge or stopped:
                    disturbed += 1
            print(f"{name:<52} {'yes' if is_loop else 'no':>5} {at if at else '—':>15} "
                  f"{'yes' if stopped else 'no':>8} {run.turns:>6}")  # fmt: skip
        print()
        print(f"loops caught: {len(caught)}/{loops}, at turn {max(caught) if caught else '—'} at the latest "
              f"(median {sorted(caught)[len(caught) // 2] if caught else '—'})")  # fmt: skip
        print(f"healthy runs disturbed: {disturbed}/{healthy}")


if __name__ == "__main__":
    main()
