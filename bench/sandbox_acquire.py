"""What a local sandbox costs: acquiring it (`git clone --shared`, as the provider does) against a full
`git clone --no-hardlinks` (what it did before) of the same host repository, in the same run; and
what bubblewrap adds to one command against the same command unconfined.

    python bench/sandbox_acquire.py [--files 2000] [--commits 100] [--history-mib 64] [--rounds 7]

The source is a generated repository, packed as a host mirror is after a clone: source-like files
changed over a history of commits, and a history heavier than its checkout (a 4 MiB data file
replaced `history-mib / 4` times: its old versions stay in the objects, as real repositories keep
old assets, vendored code and generated files), since what a full clone copies is the history.
Everything happens under a temporary directory that is removed afterwards; nothing touches the
database (the provider only needs a sandbox's id).
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from sandboxes.git import clone, git_run, resolve_ref  # noqa: E402
from sandboxes.models import Sandbox  # noqa: E402
from sandboxes.providers.confinement import confinement_probe  # noqa: E402
from sandboxes.providers.local import LocalSandboxProvider, LocalWorkspace  # noqa: E402


def make_source(path: Path, files: int, commits: int, history_mib: int) -> None:
    rng = random.Random(7)
    path.mkdir(parents=True)
    git_run("init", "--quiet", "--initial-branch=main", cwd=path)
    words = [f"name{n}" for n in range(500)]
    for number in range(files):
        target = path / f"pkg{number % 40}" / f"module_{number}.py"
        target.parent.mkdir(exist_ok=True)
        lines = [f"def {rng.choice(words)}_{i}(x):\n    return x + {rng.randint(0, 999)}\n" for i in range(40)]
        target.write_text("".join(lines))
    git_run("add", "-A", cwd=path)
    git_run("commit", "--quiet", "-m", "initial", cwd=path)
    for number in range(commits):
        for _ in range(20):
            module = rng.randrange(files)
            with (path / f"pkg{module % 40}" / f"module_{module}.py").open("a") as handle:
                handle.write(f"\n# change {number}\n")
        git_run("commit", "--quiet", "-am", f"change {number}", cwd=path)
    (path / "data").mkdir()
    for number in range(max(1, history_mib // 4)):
        (path / "data" / "fixture.bin").write_bytes(rng.randbytes(4 * 1024**2))
        git_run("add", "-A", cwd=path)
        git_run("commit", "--quiet", "-m", f"data {number}", cwd=path)
    git_run("gc", "--quiet", cwd=path, timeout=600)


def disk_usage(path: Path) -> int:
    total = 0
    for current, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(current, name)).st_size
            except OSError:
                pass
    return total


def full_clone(source: Path, target: Path) -> None:
    """What the local provider did before: a full copy of the objects, then the checkout."""
    clone(str(source), target)
    git_run("checkout", "--quiet", "-B", "omoi/bench", resolve_ref(target, "main"), cwd=target)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--history-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="omoi-bench-") as tmp:
        base = Path(tmp)
        source = base / "source"
        print(f"source: {options.files} files, {options.commits + 1} commits (generating...)", flush=True)
        make_source(source, options.files, options.commits, options.history_mib)
        objects = disk_usage(source / ".git" / "objects")
        print(f"source objects: {objects / 1024**2:.1f} MiB packed")
        settings.OMOI_SANDBOX_ROOT = base / "sandboxes"
        provider = LocalSandboxProvider()

        shared, copied = [], []
        shared_git, copied_git = 0, 0
        for round_number in range(options.rounds):
            sandbox = Sandbox(pk=1000 + round_number, provider="local")
            target = base / f"full-{round_number}"
            acquire = functools.partial(
                provider.acquire, sandbox=sandbox, source=str(source), ref="main", branch="omoi/bench"
            )
            copy = functools.partial(full_clone, source, target)
            # Alternate the order so neither method always meets a warm cache first.
            for which in ("copy", "acquire") if round_number % 2 else ("acquire", "copy"):
                if which == "copy":
                    copied.append(timed(copy))
                else:
                    shared.append(timed(acquire))
            shared_git = disk_usage(provider.workspace_dir(sandbox) / ".git")
            copied_git = disk_usage(target / ".git")
            provider.release(sandbox=sandbox)
            shutil.rmtree(target)

        # The clone step alone (no checkout), where the two differ: copying the objects or not.
        clone_shared, clone_copied = [], []
        for round_number in range(options.rounds):
            for method, times in (("--shared", clone_shared), ("--no-hardlinks", clone_copied)):
                target = base / f"bare-{round_number}{method}"
                step = functools.partial(
                    git_run, "clone", method, "--no-checkout", "--quiet", "--", str(source), str(target), cwd=base
                )
                times.append(timed(step))
                shutil.rmtree(target)

        shared_median, copied_median = statistics.median(shared), statistics.median(copied)
        print(f"\nacquire, median of {options.rounds} (each: clone, checkout of a new branch)")
        mib = 1024**2
        print(f"  git clone --no-hardlinks (before)  {copied_median * 1000:8.1f} ms  .git {copied_git / mib:6.1f} MiB")
        print(f"  git clone --shared (the provider)  {shared_median * 1000:8.1f} ms  .git {shared_git / mib:6.1f} MiB")
        print(f"  ratio shared / full                 {shared_median / copied_median:8.2f}")
        only_shared, only_copied = statistics.median(clone_shared), statistics.median(clone_copied)
        print(f"the clone step alone (--no-checkout), median of {options.rounds}")
        print(f"  git clone --no-hardlinks            {only_copied * 1000:8.1f} ms")
        print(f"  git clone --shared                  {only_shared * 1000:8.1f} ms")
        print(f"  ratio shared / full                 {only_shared / only_copied:8.2f}")

        probe = confinement_probe()
        workspace_dir = base / "commands"
        subprocess.run(["git", "init", "--quiet", str(workspace_dir)], check=True)
        workspace = LocalWorkspace(workspace_dir)
        print(f"\none command (`true`), median of {options.rounds * 3}")
        results = {}
        for mode in ("none", "auto"):
            settings.OMOI_SANDBOX_CONFINEMENT = mode
            settings.OMOI_ALLOW_UNCONFINED = True
            workspace.run_command("true")
            command = functools.partial(workspace.run_command, "true")
            results[mode] = statistics.median(timed(command) for _ in range(options.rounds * 3))
        print(f"  unconfined (a child process)        {results['none'] * 1000:8.1f} ms")
        if probe.confined:
            print(f"  behind {probe.reason:<28} {results['auto'] * 1000:8.1f} ms")
            print(f"  ratio confined / unconfined         {results['auto'] / results['none']:8.2f}")
        else:
            print(f"  bubblewrap unavailable here: {probe.reason}")


if __name__ == "__main__":
    main()
