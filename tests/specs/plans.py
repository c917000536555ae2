"""Generated plans for SYNC at scale: used by tests/specs/test_sync.py and bench/sync_bench.py, so
the benchmark measures exactly what the tests assert about."""


def requirements_plan(count: int, *, criteria: int = 1) -> list[dict]:
    return [
        {
            "key": f"REQ-{n:03d}",
            "title": f"Requirement {n}",
            "ears_type": "ubiquitous",
            "text": f"The system shall do thing {n}.",
            "condition": "",
            "action": f"do thing {n}",
            "priority": "medium",
            "acceptance_criteria": [f"thing {n} is done", f"thing {n} is logged"][:criteria],
        }
        for n in range(1, count + 1)
    ]


def tasks_plan(count: int, *, requirement_count: int) -> list[dict]:
    """A chain with a second edge every few tasks: TSK-0002 depends on TSK-0001, TSK-0003 on
    TSK-0002 and TSK-0001, ..."""
    tasks = []
    for n in range(1, count + 1):
        depends_on = [f"TSK-{n - 1:04d}"] if n > 1 else []
        if n > 2 and n % 3 == 0:
            depends_on.append(f"TSK-{n - 2:04d}")
        tasks.append(
            {
                "key": f"TSK-{n:04d}",
                "title": f"Task {n}",
                "description": f"Do step {n}.",
                "phase": "IMPLEMENTATION",
                "priority": "medium",
                "estimate_hours": 1.0,
                "depends_on": depends_on,
                "requirements": [f"REQ-{(n % requirement_count) + 1:03d}"],
                "files": [f"src/step_{n}.py"],
                "acceptance_criteria": [f"step {n} works"],
            }
        )
    return tasks


def changed_plan(count: int, *, requirement_count: int) -> list[dict]:
    """A re-plan: every tenth task retitled, the last five dropped, five new ones, a dependency moved."""
    tasks = tasks_plan(count, requirement_count=requirement_count)[:-5]
    for task in tasks[::10]:
        task["title"] += " (revised)"
    tasks[-1]["depends_on"] = ["TSK-0001"]
    template = tasks_plan(1, requirement_count=requirement_count)[0]
    for n in range(count + 1, count + 6):
        tasks.append({**template, "key": f"TSK-{n:04d}", "title": f"New task {n}", "depends_on": ["TSK-0001"]})
    return tasks


def edges(tasks: list[dict]) -> int:
    return sum(len(task["depends_on"]) for task in tasks)
