"""A trivial repository and the replay script that plans and carries out N independent tasks on it:
the workload of bench/stream.py (a spec of N tickets running while clients watch its stream).

    python bench/stream_script.py 10 /tmp/benchlib /tmp/benchlib.replay.json

Task n adds `benchlib/value_n.py` (value_n() returns n) with a unittest module, then finishes; its
write_tests conversation finishes at once. The script says what it was recorded for, so the
replay provider refuses any other idea.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

IDEA = "Add value functions to benchlib: one module per value, each with its tests (stream benchmark)."
TEST_COMMAND = "python3 -m unittest discover -s tests"

FILES = {
    "README.md": "# benchlib\n\nValues. Tests: `python3 -m unittest discover -s tests`.\n",
    "benchlib/__init__.py": "",
    "tests/__init__.py": "",
    "tests/test_base.py": "import unittest\n\n\nclass Base(unittest.TestCase):\n    def test_true(self):\n"
    "        self.assertTrue(True)\n",
}


def make_repository(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for command in (
        ["git", "init", "--quiet", "--initial-branch=main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=bench@localhost", "-c", "user.name=bench", "commit", "--quiet", "-m", "benchlib"],
    ):
        subprocess.run(command, cwd=path, check=True)
    return path


def _submit(tool: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"tool": tool, "input": data}


def script(count: int) -> dict[str, Any]:
    keys = [f"{n:03d}" for n in range(1, count + 1)]
    conversations: dict[str, Any] = {
        "explore": [
            _submit(
                "submit_exploration",
                {
                    "project_type": "python-library",
                    "tech_stack": ["python3", "unittest"],
                    "structure": "benchlib/ holds modules; tests/ holds unittest modules.",
                    "key_files": [{"path": "benchlib/__init__.py", "purpose": "the package"}],
                    "conventions": "One module per value, one test module per module.",
                    "test_command": TEST_COMMAND,
                    "notes": "No dependencies.",
                },
            )
        ],
        "requirements": [
            _submit(
                "submit_requirements",
                {
                    "requirements": [
                        {
                            "key": f"REQ-{key}",
                            "title": f"Value {int(key)}",
                            "ears_type": "ubiquitous",
                            "text": f"The benchlib library shall provide value_{int(key)}() returning {int(key)}.",
                            "condition": "",
                            "action": f"provide value_{int(key)}() returning {int(key)}",
                            "priority": "medium",
                            "acceptance_criteria": [f"value_{int(key)}() == {int(key)}"],
                        }
                        for key in keys
                    ]
                },
            )
        ],
        "design": [
            _submit(
                "submit_design",
                {
                    "architecture": "## Architecture\n\nOne module per value in `benchlib/`.",
                    "components": [
                        {"name": "benchlib", "responsibility": "the values", "files": ["benchlib/__init__.py"]}
                    ],
                    "data_model": [],
                    "api_endpoints": [],
                    "risks": [],
                },
            )
        ],
        "tasks": [
            _submit(
                "submit_tasks",
                {
                    "tasks": [
                        {
                            "key": f"TSK-{key}",
                            "title": f"Add value_{int(key)}",
                            "description": f"Add benchlib/value_{int(key)}.py with value_{int(key)}() and tests.",
                            "phase": "IMPLEMENTATION",
                            "priority": "medium",
                            "estimate_hours": 0.5,
                            "depends_on": [],
                            "requirements": [f"REQ-{key}"],
                            "files": [f"benchlib/value_{int(key)}.py", f"tests/test_value_{int(key)}.py"],
                            "acceptance_criteria": [f"value_{int(key)}() == {int(key)}"],
                        }
                        for key in keys
                    ]
                },
            )
        ],
    }
    expect: dict[str, list[str]] = {phase: ["Add value functions to benchlib"] for phase in conversations}
    for key in keys:
        n = int(key)
        module = f"def value_{n}() -> int:\n    return {n}\n"
        test = (
            f"import unittest\n\nfrom benchlib.value_{n} import value_{n}\n\n\n"
            f"class Value{n}(unittest.TestCase):\n    def test_value(self):\n"
            f"        self.assertEqual(value_{n}(), {n})\n"
        )
        conversations[f"TSK-{key}:implement_feature"] = [
            {
                "tools": [
                    {"tool": "write_file", "input": {"path": f"benchlib/value_{n}.py", "content": module}},
                    {"tool": "write_file", "input": {"path": f"tests/test_value_{n}.py", "content": test}},
                ]
            },
            _submit("finish", {"summary": f"Added value_{n} and its test."}),
        ]
        conversations[f"TSK-{key}:write_tests"] = [_submit("finish", {"summary": "The test is already there."})]
        expect[f"TSK-{key}"] = [f"TSK-{key}: Add value_{n}"]
    return {
        "model": "replay",
        "recorded_for": f"bench/stream_script.py: the benchlib repository and the idea {IDEA!r} ({count} tasks)",
        "expect": expect,
        "conversations": conversations,
    }


if __name__ == "__main__":
    count, repository, script_path = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    make_repository(repository)
    script_path.write_text(json.dumps(script(count), indent=2))
    print(f"{repository} and {script_path}: {count} tasks")
