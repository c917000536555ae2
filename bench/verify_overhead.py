"""What the evidence costs: the wall time that red to green and changed-line coverage add to the
host's verification of a task, as a ratio to the plain test run, measured in the same run on the
same sandbox.

    python bench/verify_overhead.py [--rounds 3] [--large-rounds 1] [--skip-large]

Two repositories, each with a task's change applied in a real local sandbox (behind bubblewrap
where it works, as in production):

- the sample (samples/textkit, 4 unittest tests): the change of the demo's first task (a new
  module and its test file, from samples/textkit.replay.json);
- a real library with hundreds of tests: more-itertools 11.2.1 from its sdist (929 unittest tests),
  with a change to more.py (a new function in __all__) and a test class appended to its largest test
  file, tests/test_more.py, so red to green runs that whole file twice: the expensive case.

The sdist is fetched once with `pip download` into var/bench-cache/ (the only network this needs;
later runs use the cached file). For each round, on a fresh clone: the plain run of the project's
test command, then what verification now does: read the task's changes, the suite under coverage.py
(in place of the plain run), and the red-to-green runs. Printed: the median of each, and the ratios
to the plain run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")
os.environ.setdefault("OMOI_ALLOW_UNCONFINED", "1")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from sandboxes.git import git_run  # noqa: E402
from sandboxes.providers.confinement import confinement_probe  # noqa: E402
from sandboxes.providers.local import LocalWorkspace, source_objects  # noqa: E402
from tickets.checks import checks_pass  # noqa: E402
from tickets.services.execution import evidence  # noqa: E402

LIBRARY = "more-itertools==11.2.1"
SDIST = "more_itertools-11.2.1.tar.gz"
NEW_FUNCTION = '''

def omoi_pairwise_sums(iterable):
    """Sums of each element and the next: [1, 2, 4] -> [3, 6]."""
    items = list(iterable)
    if len(items) < 2:
        return []
    return [a + b for a, b in zip(items, items[1:])]
'''
NEW_TEST = """

class OmoiPairwiseSumsTests(TestCase):
    def test_sums(self):
        self.assertEqual(mi.omoi_pairwise_sums([1, 2, 4]), [3, 6])

    def test_short(self):
        self.assertEqual(mi.omoi_pairwise_sums([1]), [])
"""


def commit_all(path: Path, message: str) -> None:
    git_run("init", "--quiet", "--initial-branch=main", cwd=path)
    git_run("add", "-A", cwd=path)
    git_run("commit", "--quiet", "-m", message, cwd=path)


def sample_repository(root: Path) -> tuple[Path, str, dict[str, str]]:
    from specs.cli.demo import prepare_sample

    path = root / "textkit"
    prepare_sample(path)
    script = json.loads((ROOT / "samples" / "textkit.replay.json").read_text())
    turns = script["conversations"]["TSK-001:implement_feature"]
    change = {t["input"]["path"]: t["input"]["content"] for t in turns if t.get("tool") == "write_file"}
    return path, script["conversations"]["explore"][-1]["input"]["test_command"], change


def library_repository(root: Path) -> tuple[Path, str, dict[str, str]]:
    cache = Path(settings.DATA_DIR) / "bench-cache"
    archive = cache / SDIST
    if not archive.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"fetching {LIBRARY} (sdist, once) into {cache} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
            + ["-d", str(cache), LIBRARY],
            check=True,
        )
    with tarfile.open(archive) as sdist:
        sdist.extractall(root, filter="data")
    path = root / SDIST.removesuffix(".tar.gz")
    commit_all(path, f"{LIBRARY} from its sdist")
    more = (path / "more_itertools" / "more.py").read_text()
    more = more.replace("__all__ = [\n", "__all__ = [\n    'omoi_pairwise_sums',\n", 1) + NEW_FUNCTION
    tests = (path / "tests" / "test_more.py").read_text() + NEW_TEST
    return path, "python3 -m unittest discover -s tests", {"more_itertools/more.py": more, "tests/test_more.py": tests}


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def measure(source: Path, command: str, change: dict[str, str], sandboxes: Path, number: int) -> dict[str, float]:
    root = sandboxes / str(number)
    git_run("clone", "--quiet", "--shared", str(source), str(root), cwd=sandboxes)
    base = git_run("rev-parse", "HEAD", cwd=root).strip()
    for path, content in change.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    workspace = LocalWorkspace(root, read_only_paths=source_objects(str(source)))  # as the provider makes it
    plain, plain_s = timed(lambda: workspace.run_command(command))
    assert plain.exit_code == 0, plain.stderr[-2000:]
    changes, changes_s = timed(lambda: evidence.task_changes(workspace, base=base))
    suite, suite_s = timed(lambda: evidence.suite_run(workspace, command=command, changes=changes))
    assert checks_pass(suite.test_results), suite.test_results
    red_green, red_green_s = timed(
        lambda: evidence.red_to_green(workspace, command=command, changes=changes, fork_point=lambda: None)
    )
    assert red_green["red_to_green"] >= 1, red_green
    shutil.rmtree(root)
    shutil.rmtree(workspace.home, ignore_errors=True)
    return {
        "tests": suite.test_results["passed"],
        "plain": plain_s,
        "changes": changes_s,
        "coverage_suite": suite_s,
        "red_to_green": red_green_s,
        "files": len(red_green["files"]),
        "coverage_percent": suite.coverage.get("percent"),
    }


def report(name: str, rounds: list[dict[str, float]]) -> None:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    plain = median("plain")
    under_coverage = median("coverage_suite")
    coverage_added = under_coverage - plain
    red_green = median("red_to_green")
    changes = median("changes")
    added = changes + coverage_added + red_green

    def line(label: str, seconds: float, note: str = "") -> None:
        print(f"  {label:<40} {seconds:8.2f} s   {seconds / plain:5.2f}x{note}")

    print(f"\n{name}: {rounds[0]['tests']} tests, {len(rounds)} round(s), medians")
    line("plain test run", plain)
    line("the suite under coverage.py", under_coverage, f"   (changed lines run: {rounds[0]['coverage_percent']}%)")
    line("reading the task's changes", changes)
    line(f"red to green ({rounds[0]['files']} file, before + after)", red_green)
    line("added by coverage", coverage_added)
    line("added by red to green (with changes)", red_green + changes)
    line("added in all", added, f"   (verification takes {(plain + added) / plain:.2f}x the plain run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds on the sample")
    parser.add_argument("--large-rounds", type=int, default=1, help="rounds on the library")
    parser.add_argument("--skip-large", action="store_true", help="only the sample")
    options = parser.parse_args()
    probe = confinement_probe()
    boundary = "bubblewrap" if probe.confined else f"unconfined ({probe.reason})"
    print(f"sandbox: {boundary}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="omoi-verify-bench-") as tmp:
        root = Path(tmp)
        sandboxes = root / "sandboxes"
        sandboxes.mkdir()
        cases = [("sample textkit", sample_repository, options.rounds)]
        if not options.skip_large:
            cases.append((LIBRARY, library_repository, options.large_rounds))
        for number, (name, prepare, rounds) in enumerate(cases):
            source, command, change = prepare(root / f"source-{number}")
            print(f"\n{name}: `{command}`", flush=True)
            results = [measure(source, command, change, sandboxes, number * 100 + i) for i in range(rounds)]
            report(name, results)


if __name__ == "__main__":
    main()
