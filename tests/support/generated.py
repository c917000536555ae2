"""A replay script for a spec of N independent tasks on the sample repository (samples/textkit):
each task adds a small module and its unittest test in one model turn, then finishes; its
write_tests task finishes at once (the tests are there). The tests and the benchmarks use it to run
specs of any size end to end on a zero-latency model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEST_COMMAND = "python3 -m unittest discover -s tests"


def _module(number: int) -> str:
    return (
        f'"""Feature {number}."""\n\n\n'
        f"def feature_{number}() -> int:\n"
        f'    """Return {number}."""\n'
        f"    return {number}\n"
    )


def _test(number: int) -> str:
    return (
        "import unittest\n\n"
        f"from textkit.feature_{number} import feature_{number}\n\n\n"
        f"class Feature{number}Tests(unittest.TestCase):\n"
        f"    def test_returns_{number}(self):\n"
        f"        self.assertEqual(feature_{number}(), {number})\n"
    )


def independent_tasks_script(count: int, *, extra_turns: int = 0) -> dict[str, Any]:
    """The script. `extra_turns` adds read-only turns before each implementation (longer runs)."""
    keys = [f"{number:03d}" for number in range(1, count + 1)]
    requirements = [
        {
            "key": f"REQ-{key}",
            "title": f"Feature {int(key)}",
            "ears_type": "event",
            "text": f"When a caller calls feature_{int(key)}, the textkit library shall return {int(key)}.",
            "condition": f"a caller calls feature_{int(key)}",
            "action": f"return {int(key)}",
            "priority": "medium",
            "acceptance_criteria": [f"feature_{int(key)}() returns {int(key)}"],
        }
        for key in keys
    ]
    tasks = [
        {
            "key": f"TSK-{key}",
            "title": f"Add feature_{int(key)}",
            "description": f"Create textkit/feature_{int(key)}.py with feature_{int(key)}() and its test.",
            "phase": "IMPLEMENTATION",
            "priority": "medium",
            "estimate_hours": 1,
            "depends_on": [],
            "requirements": [f"REQ-{key}"],
            "files": [f"textkit/feature_{int(key)}.py", f"tests/test_feature_{int(key)}.py"],
            "acceptance_criteria": [f"feature_{int(key)}() == {int(key)}"],
        }
        for key in keys
    ]
    conversations: dict[str, Any] = {
        "explore": [
            {
                "tool": "submit_exploration",
                "input": {
                    "project_type": "python-library",
                    "tech_stack": ["python3", "unittest"],
                    "structure": "textkit/ holds the modules; tests/ the unittest modules.",
                    "key_files": [{"path": "textkit/core.py", "purpose": "existing helpers"}],
                    "conventions": "Small functions with docstrings; one test module per module.",
                    "test_command": TEST_COMMAND,
                    "notes": "",
                },
            }
        ],
        "requirements": [{"tool": "submit_requirements", "input": {"requirements": requirements}}],
        "design": [
            {
                "tool": "submit_design",
                "input": {
                    "architecture": "One module per feature under textkit/, each with its test module.",
                    "components": [
                        {"name": f"textkit.feature_{int(key)}", "responsibility": "a feature", "files": []}
                        for key in keys
                    ],
                    "data_model": [],
                    "api_endpoints": [],
                    "risks": [],
                },
            }
        ],
        "tasks": [{"tool": "submit_tasks", "input": {"tasks": tasks}}],
    }
    for key in keys:
        number = int(key)
        reads = [{"tool": "read_file", "input": {"path": "textkit/core.py"}} for _ in range(extra_turns)]
        conversations[f"TSK-{key}:implement_feature"] = [
            *reads,
            {
                "tools": [
                    {
                        "tool": "write_file",
                        "input": {"path": f"textkit/feature_{number}.py", "content": _module(number)},
                    },
                    {
                        "tool": "write_file",
                        "input": {"path": f"tests/test_feature_{number}.py", "content": _test(number)},
                    },
                ]
            },
            {"tool": "finish", "input": {"summary": f"Added feature_{number} with its test."}},
        ]
        conversations[f"TSK-{key}:write_tests"] = [
            {"tool": "finish", "input": {"summary": f"tests/test_feature_{number}.py covers feature_{number}."}}
        ]
    return {"model": "replay", "conversations": conversations}


def write_independent_tasks_script(path: Path, count: int, **options: Any) -> str:
    path.write_text(json.dumps(independent_tasks_script(count, **options)))
    return str(path)
