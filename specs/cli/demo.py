"""`manage.py omoi demo`: the whole path, idea → spec → tickets → agent runs → merged branch,
on whatever is configured (by default SQLite, the filesystem broker, the local sandbox and, with
no ANTHROPIC_API_KEY, the replay model playing samples/textkit.replay.json).

It starts a real Celery worker process, launches a spec, shows the phases and the board as
tickets move, and ends by running the sample's tests on a fresh checkout of the spec branch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from omoi.models import LLMUsage
from omoi.services import token_issue
from sandboxes import git
from sandboxes.models import SandboxEvent
from sandboxes.providers import sandbox_boundary_line
from sandboxes.providers.confinement import confinement_probe, unconfined_allowed
from sandboxes.providers.local import LocalWorkspace
from specs.models import Spec, SpecStatus
from tickets.models import Phase, Project, Ticket
from tickets.repository_policy import RepositoryRefused, repository_accept, repository_check

SAMPLES = Path(settings.BASE_DIR) / "samples"
SAMPLE_REPOSITORY = SAMPLES / "textkit"
SAMPLE_SCRIPT = SAMPLES / "textkit.replay.json"
SAMPLE_IDEA = "Add word statistics to textkit: count the words in a text and list its most frequent words."
SAMPLE_TEST_COMMAND = "python3 -m unittest discover -s tests -v"
BOARD_COLUMNS = [Phase.REQUIREMENTS, Phase.DESIGN, Phase.IMPLEMENTATION, Phase.TESTING, Phase.DEPLOYMENT, Phase.DONE]


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the whole path end to end on the configured stack")
    parser.add_argument("--repository", help="a git repository to work on (needs ANTHROPIC_API_KEY)")
    parser.add_argument("--idea", help="the idea to carry out (default: the sample's)")
    parser.add_argument("--test-command", default="", help="how the repository's tests run")
    parser.add_argument("--timeout", type=int, default=900, help="seconds to wait for the spec to finish")
    parser.set_defaults(handler=handle)


def _say(command, text: str = "") -> None:
    command.stdout.write(text)
    command.stdout.flush()


def prepare_sample(target: Path) -> None:
    """A fresh git repository holding the sample project, on branch main."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(SAMPLE_REPOSITORY, target)
    git.git_run("init", "--quiet", "--initial-branch=main", cwd=target)
    git.git_run("add", "-A", cwd=target)
    git.git_run("commit", "--quiet", "-m", "textkit: initial import", cwd=target)


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    from omoi.celery import queues_purge

    queues_purge()
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "omoi", "worker", "-Q", "planning,execution,events,default",
         "-c", "2", "--loglevel=INFO", "-n", f"demo-{os.getpid()}@%h",
         "-B", "--schedule", str(Path(settings.DATA_DIR) / "demo-beat-schedule")],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"the worker exited at start; see {log_path}")
        if b" ready." in log_path.read_bytes():
            return process
        time.sleep(0.3)
    process.kill()
    raise CommandError(f"the worker did not start in 60 s; see {log_path}")


def _board(spec: Spec) -> str:
    tickets = list(Ticket.objects.filter(spec=spec).select_related("spec_task").order_by("id"))
    cells = []
    for phase in [*BOARD_COLUMNS, Phase.BLOCKED]:
        keys = [t.spec_task.key if t.spec_task_id else f"#{t.pk}" for t in tickets if t.phase == phase]
        if keys or phase != Phase.BLOCKED:
            cells.append(f"{phase.label}: {', '.join(keys) or '-'}")
    return "    board │ " + " │ ".join(cells)


def _describe(event: SandboxEvent) -> str | None:
    payload = event.payload or {}
    kind = event.type
    if kind == "spec.phase_started":
        return f"  ▶ planning: {payload.get('phase')}"
    if kind == "spec.phase_completed":
        return f"  ✓ {payload.get('phase')} done" + (f" — {payload['summary']}" if payload.get("summary") else "")
    if kind == "spec.phase_retry":
        return f"  ↺ {payload.get('phase')}: output rejected, sent back to the model"
    if kind in ("spec.phase_failed", "spec.failed"):
        return f"  ✗ failed: {payload.get('error') or payload}"
    if kind == "spec.planning_complete":
        return "  ✓ planning complete"
    if kind == "spec.executing":
        return f"  ▶ executing: {payload.get('tickets')} tickets on branch {payload.get('branch')}"
    if kind == "sandbox.unconfined":
        return f"    ! sandbox {payload.get('sandbox')}: {payload.get('reason')}"
    if kind == "sandbox.setup":
        state = "reused" if payload.get("reused") else ("done" if payload.get("ok") else "FAILED")
        return f"    · setup `{payload.get('command')}` {state} ({payload.get('duration_s')} s)"
    if kind == "agent.tool_call":
        arguments = payload.get("input") or {}
        target = arguments.get("path") or arguments.get("command") or arguments.get("pattern") or ""
        return f"      · {payload.get('name')} {target}".rstrip()
    if kind == "task.verified":
        details = [f"{payload.get('tests_passed', '?')} tests passed"]
        if payload.get("red_to_green"):
            details.append("red → green: " + ", ".join(payload["red_to_green"]))
        if payload.get("coverage_percent") is not None:
            details.append(f"changed lines run: {payload['coverage_percent']}%")
        return f"    ✓ task verified by the host ({'; '.join(details)})"
    if kind == "task.verification_failed":
        if payload.get("reason") == "evidence":
            return "    ✗ the tests pass but their evidence does not hold; the findings went back to the agent"
        return "    ✗ the host's checks failed; the output went back to the agent"
    if kind == "task.failed":
        return f"    ✗ task failed: {payload.get('reason')}"
    if kind == "git.merged":
        return f"    ⇢ merged into {payload.get('branch')} at {str(payload.get('commit'))[:10]}"
    if kind == "spec.completed":
        return f"  ✓ spec completed: {payload.get('criteria_verified')} acceptance criteria verified"
    if kind == "spec.branch_pushed":
        return f"  ⇢ branch {payload.get('branch')} pushed to {payload.get('repository')}"
    if kind == "spec.pull_request_opened":
        return f"  ⇢ pull request #{payload.get('number')}: {payload.get('url')}"
    return None


def _follow(command, spec: Spec, *, timeout: int, worker: subprocess.Popen, log_path: Path) -> Spec:
    after = 0
    last_board = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in SandboxEvent.objects.filter(spec=spec, sequence__gt=after).order_by("sequence"):
            after = event.sequence
            line = _describe(event)
            if line:
                _say(command, line)
            if event.type == "ticket.transitioned":
                board = _board(spec)
                if board != last_board:
                    _say(command, board)
                    last_board = board
        spec.refresh_from_db()
        finished = spec.status in (SpecStatus.FAILED, SpecStatus.CANCELLED) or (
            spec.status == SpecStatus.COMPLETED
            and SandboxEvent.objects.filter(
                spec=spec, type__in=["spec.branch_pushed", "spec.pull_request_opened"]
            ).exists()
        )
        if finished and not SandboxEvent.objects.filter(spec=spec, sequence__gt=after).exists():
            return spec
        if worker.poll() is not None:
            raise CommandError(f"the worker stopped unexpectedly; see {log_path}")
        time.sleep(0.3)
    raise CommandError(f"spec {spec.pk} did not finish within {timeout} s (status {spec.status}); see {log_path}")


def _default_branch(repository: str) -> str:
    """The branch the repository's HEAD names, asked of the repository (git ls-remote), not read
    by running git inside its tree."""
    try:
        answer = git.git_run("ls-remote", "--symref", "--", repository, "HEAD", cwd=settings.DATA_DIR, timeout=30)
    except git.GitError as error:
        raise CommandError(f"the repository {repository} cannot be read: {error}") from error
    for line in answer.splitlines():
        if line.startswith("ref: refs/heads/"):
            return line.removeprefix("ref: refs/heads/").split("\t", 1)[0]
    return "main"


def _verify_branch(command, repository: str, branch: str, test_command: str, default_branch: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        checkout = Path(tmp) / "checkout"
        git.clone(repository, checkout, branch=branch)
        log = git.git_run("log", "--format=  %h %s", f"origin/{default_branch}..HEAD", cwd=checkout)
        _say(command, f"\nCommits on {branch}:\n{log.rstrip()}")
        # The repository's tests are the repository's code: they run behind the sandbox boundary too.
        result = LocalWorkspace(checkout).run_command(test_command, timeout_s=300)
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        _say(command, f"\nThe branch's tests on a fresh checkout (`{test_command}`): exit {result.exit_code}")
        for line in tail:
            _say(command, f"  {line}")
        return result.ok


def handle(command, options) -> None:
    from specs.services.planning import spec_launch

    use_claude = bool(settings.ANTHROPIC_API_KEY) and settings.OMOI_LLM_PROVIDER == "anthropic"
    if options.get("repository") and not use_claude:
        raise CommandError(
            "--repository needs a real model: set ANTHROPIC_API_KEY (the replay script only knows the sample)"
        )
    user, _ = get_user_model().objects.get_or_create(username="demo", defaults={"email": "demo@localhost"})
    if not user.has_usable_password():
        user.set_password("demo-password")
        user.save(update_fields=["password"])
    _, token = token_issue(user=user)

    if options.get("repository"):
        repository = (
            str(Path(options["repository"]).resolve()) if "://" not in options["repository"] else options["repository"]
        )
        name = Path(repository.rstrip("/")).name.removesuffix(".git") or "repository"
        test_command = options.get("test_command") or ""
        try:
            repository = repository_check(repository)
        except RepositoryRefused as error:
            raise CommandError(
                f"the repository {repository} is refused: {error}. A local repository must be under "
                "OMOI_LOCAL_REPOSITORY_ROOTS."
            ) from error
        default_branch = _default_branch(repository)
        idea = options.get("idea") or ""
        if not idea:
            raise CommandError("--idea is required with --repository")
    else:
        target = Path(settings.DATA_DIR) / "demo" / "textkit"
        prepare_sample(target)
        repository, name, test_command, default_branch = str(target), "textkit-demo", SAMPLE_TEST_COMMAND, "main"
        idea = options.get("idea") or SAMPLE_IDEA
    try:
        repository = repository_accept(repository, default_branch=default_branch)
    except RepositoryRefused as error:
        raise CommandError(
            f"the repository {repository} is refused: {error}. A local repository must be under "
            "OMOI_LOCAL_REPOSITORY_ROOTS (the demo's own folder is listed by default only with DEBUG on)."
        ) from error
    project, _ = Project.objects.update_or_create(
        owner=user,
        name=name,
        defaults={"repository": repository, "default_branch": default_branch, "test_command": test_command},
    )

    env = {**os.environ}
    if not use_claude:
        env.setdefault("OMOI_REPLAY_SCRIPT", str(SAMPLE_SCRIPT))
        settings.OMOI_REPLAY_SCRIPT = env["OMOI_REPLAY_SCRIPT"]
    model = settings.OMOI_MODEL if use_claude else f"replay ({Path(env['OMOI_REPLAY_SCRIPT']).name})"
    _say(command, "Omoi demo")
    _say(command, f"  database   {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
    _say(command, f"  broker     {settings.CELERY_BROKER_URL.split('://')[0]}")
    _say(command, f"  model      {model}")
    _say(command, f"  sandbox    {sandbox_boundary_line()}")
    if settings.OMOI_SANDBOX_PROVIDER == "local" and not confinement_probe().confined:
        if not unconfined_allowed():
            env["OMOI_ALLOW_UNCONFINED"] = "1"
            settings.OMOI_ALLOW_UNCONFINED = True
        _say(command, "  !          agent commands run on this machine WITHOUT isolation; the demo's worker allows it "
                      "for its sample. Install bubblewrap (Debian package `bubblewrap`) to confine them.")  # fmt: skip
    _say(command, f"  repository {repository}")
    _say(command, f"  API token  {token}  (user 'demo'; try: curl -H 'Authorization: Token {token}' "
                  "http://127.0.0.1:8000/api/v1/specs)")  # fmt: skip
    _say(command, "  web        `make web`, then http://127.0.0.1:8000 as a staff user (`manage.py createsuperuser`: "
                  "staff see every project, this one included)")  # fmt: skip

    log_path = Path(settings.DATA_DIR) / "demo-worker.log"
    worker = _start_worker(env, log_path)
    _say(command, f"  worker     started (pid {worker.pid}, log {log_path})\n")
    try:
        spec = spec_launch(project_id=project.pk, user=user, idea=idea, require_approval=False)
        _say(command, f"Spec #{spec.pk} launched: {idea}")
        spec = _follow(command, spec, timeout=options["timeout"], worker=worker, log_path=log_path)
    finally:
        os.killpg(worker.pid, 15)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)

    usage = LLMUsage.objects.filter(spec=spec)
    tokens = sum(u.input_tokens + u.output_tokens for u in usage)
    _say(command, "")
    _say(command, f"Spec #{spec.pk}: {spec.status} — {spec.requirements.count()} requirements, "
                  f"{spec.tasks.count()} tasks, {Ticket.objects.filter(spec=spec).count()} tickets, "
                  f"{usage.count()} model calls, {tokens} tokens")  # fmt: skip
    if spec.status != SpecStatus.COMPLETED:
        raise CommandError(f"the spec did not complete: {spec.last_error or spec.status}")
    if spec.pull_request_url:
        _say(command, f"Pull request: {spec.pull_request_url}")
    command_for_tests = project.test_command or (spec.phase_data.get("explore", {}) or {}).get("test_command", "")
    if command_for_tests and not _verify_branch(
        command, repository, spec.branch_name, command_for_tests, default_branch
    ):
        raise CommandError("the spec branch's tests fail on a fresh checkout")
    _say(command, f"\nDone: branch {spec.branch_name} in {repository} holds the work.")
