"""A small fixture repository and the replay script that plans an idea on it.

Reusable: `make_fixture_repository(path)` creates the git repository (branch main, one commit);
`planning_script()` returns the replay script dict whose four conversations explore it and submit
the outputs below; `write_script(path, script)` writes it for OMOI_REPLAY_SCRIPT. The expected
rows are spelled out as constants, so tests assert exact results. Variants for repair tests:
`planning_script(requirements=[turn, ...])` replaces a conversation's turns.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

FIXTURE_FILES = {
    "README.md": "# notes\n\nA tiny note keeper. Run the tests with `python -m unittest discover -s tests`.\n",
    "notes/__init__.py": "",
    "notes/store.py": (
        '"""Notes kept in memory."""\n\n'
        "_NOTES: list[str] = []\n\n\n"
        "def add_note(text: str) -> int:\n"
        '    """Store a note and return its number."""\n'
        "    _NOTES.append(text)\n"
        "    return len(_NOTES)\n\n\n"
        "def list_notes() -> list[str]:\n"
        "    return list(_NOTES)\n"
    ),
    "tests/__init__.py": "",
    "tests/test_store.py": (
        "import unittest\n\n"
        "from notes.store import add_note, list_notes\n\n\n"
        "class StoreTests(unittest.TestCase):\n"
        "    def test_add_returns_number(self):\n"
        "        self.assertEqual(add_note('milk'), len(list_notes()))\n"
    ),
}

IDEA = "Let users tag notes and find the notes that carry a tag."

EXPLORATION: dict[str, Any] = {
    "project_type": "python-library",
    "tech_stack": ["python3", "unittest"],
    "structure": "notes/ holds the library; tests/ holds unittest modules.",
    "key_files": [
        {"path": "notes/store.py", "purpose": "the in-memory note store"},
        {"path": "tests/test_store.py", "purpose": "tests of the store"},
    ],
    "conventions": "Small functions with docstrings and type hints; one test module per library module.",
    "test_command": "python -m unittest discover -s tests",
    "notes": "No dependencies.",
}

REQUIREMENTS: dict[str, Any] = {
    "requirements": [
        {
            "key": "REQ-001",
            "title": "Tag a note",
            "ears_type": "event",
            "text": "When a caller tags a note with a word, the notes library shall store the tag with the note.",
            "condition": "a caller tags a note with a word",
            "action": "store the tag with the note",
            "priority": "high",
            "acceptance_criteria": [
                "tag_note(1, 'home') stores the tag 'home' on note 1",
                "A note can carry many tags",
            ],
        },
        {
            "key": "REQ-002",
            "title": "Find notes by tag",
            "ears_type": "ubiquitous",
            "text": "The notes library shall list the notes that carry a given tag, oldest first.",
            "condition": "",
            "action": "list the notes that carry a given tag, oldest first",
            "priority": "medium",
            "acceptance_criteria": ["notes_tagged('home') lists exactly the notes tagged 'home'"],
        },
        {
            "key": "REQ-003",
            "title": "Unknown note",
            "ears_type": "unwanted",
            "text": "If a caller tags a note number that does not exist, then the notes library shall raise KeyError.",
            "condition": "a caller tags a note number that does not exist",
            "action": "raise KeyError",
            "priority": "low",
            "acceptance_criteria": ["tag_note(99, 'x') raises KeyError", "No tag is stored for a missing note"],
        },
    ]
}

DESIGN: dict[str, Any] = {
    "architecture": "## Architecture\n\nTags live beside the notes in `notes/store.py`: note number to a set.",
    "components": [
        {"name": "notes.store", "responsibility": "notes and their tags", "files": ["notes/store.py"]},
        {"name": "tests", "responsibility": "unittest coverage", "files": ["tests/test_tags.py"]},
    ],
    "data_model": [
        {"name": "Tags", "description": "note number → set of tags", "fields": ["number: int", "tags: set"]}
    ],
    "api_endpoints": [
        {"method": "CALL", "path": "tag_note(number, tag)", "description": "tag a note"},
        {"method": "CALL", "path": "notes_tagged(tag)", "description": "notes with a tag"},
    ],
    "risks": ["Tags are not persisted, like the notes themselves"],
}

TASKS: dict[str, Any] = {
    "tasks": [
        {
            "key": "TSK-001",
            "title": "Add tag_note",
            "description": "Add tag_note(number, tag) to notes/store.py with tests.",
            "phase": "IMPLEMENTATION",
            "priority": "high",
            "estimate_hours": 1.5,
            "depends_on": [],
            "requirements": ["REQ-001"],
            "files": ["notes/store.py", "tests/test_tags.py"],
            "acceptance_criteria": ["tag_note(1, 'home') stores 'home'"],
        },
        {
            "key": "TSK-002",
            "title": "Add notes_tagged",
            "description": "Add notes_tagged(tag) returning the tagged notes, oldest first, with tests.",
            "phase": "IMPLEMENTATION",
            "priority": "medium",
            "estimate_hours": 1,
            "depends_on": ["TSK-001"],
            "requirements": ["REQ-002"],
            "files": ["notes/store.py", "tests/test_tags.py"],
            "acceptance_criteria": ["notes_tagged('home') lists the notes tagged 'home'"],
        },
        {
            "key": "TSK-003",
            "title": "Refuse unknown notes",
            "description": "Make tag_note raise KeyError for a note number that does not exist, with tests.",
            "phase": "TESTING",
            "priority": "low",
            "estimate_hours": 0.5,
            "depends_on": ["TSK-001", "TSK-002"],
            "requirements": ["REQ-003", "REQ-001"],
            "files": ["notes/store.py", "tests/test_tags.py"],
            "acceptance_criteria": ["tag_note(99, 'x') raises KeyError"],
        },
    ]
}

# What the plan above writes, for exact assertions.
EXPECTED_REQUIREMENTS = {
    "REQ-001": ["tag_note(1, 'home') stores the tag 'home' on note 1", "A note can carry many tags"],
    "REQ-002": ["notes_tagged('home') lists exactly the notes tagged 'home'"],
    "REQ-003": ["tag_note(99, 'x') raises KeyError", "No tag is stored for a missing note"],
}
EXPECTED_DEPENDENCIES = {("TSK-002", "TSK-001"), ("TSK-003", "TSK-001"), ("TSK-003", "TSK-002")}
EXPECTED_REQUIREMENT_LINKS = {
    ("TSK-001", "REQ-001"),
    ("TSK-002", "REQ-002"),
    ("TSK-003", "REQ-001"),
    ("TSK-003", "REQ-003"),
}


def submit(tool: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"tool": tool, "input": copy.deepcopy(data)}


def planning_script(**conversations: list[dict[str, Any]]) -> dict[str, Any]:
    """The replay script planning IDEA on the fixture repository; keyword arguments replace whole
    conversations (explore=, requirements=, design=, tasks=)."""
    script = {
        "model": "replay",
        "conversations": {
            "explore": [
                {"text": "Looking at the layout first.", "tool": "list_files", "input": {"path": "."}},
                {
                    "tools": [
                        {"tool": "read_file", "input": {"path": "notes/store.py"}},
                        {"tool": "search", "input": {"pattern": "unittest", "path": "tests"}},
                    ]
                },
                submit("submit_exploration", EXPLORATION),
            ],
            "requirements": [submit("submit_requirements", REQUIREMENTS)],
            "design": [
                {"tool": "read_file", "input": {"path": "notes/store.py", "start_line": 1, "end_line": 5}},
                submit("submit_design", DESIGN),
            ],
            "tasks": [submit("submit_tasks", TASKS)],
        },
    }
    script["conversations"].update(copy.deepcopy(conversations))
    return script


def write_script(path: Path, script: dict[str, Any]) -> str:
    path.write_text(json.dumps(script, indent=2))
    return str(path)


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def make_fixture_repository(path: Path) -> Path:
    """A git repository with FIXTURE_FILES committed on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    for name, content in FIXTURE_FILES.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    _git("init", "--quiet", "--initial-branch=main", cwd=path)
    _git("add", "-A", cwd=path)
    _git(
        "-c",
        "user.name=Omoi Tests",
        "-c",
        "user.email=tests@omoi.invalid",
        "commit",
        "--quiet",
        "-m",
        "notes: initial import",
        cwd=path,
    )
    return path
