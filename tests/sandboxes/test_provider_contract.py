"""The contract every sandbox provider keeps, checked against each: the local provider and the
Daytona provider (through the real SDK, against tests/support/fake_daytona.py).

A workspace is acquired from a source repository on this worker at a ref, on a branch; the
model-facing tools answer alike; commands report exit codes, streams and timeouts with the
output written before the kill; git runs inside; the task's commits leave as a bundle the host
fetches into its own repository; another process (a new provider) reopens the workspace; release
removes it.
"""

from pathlib import Path

import pytest

from sandboxes.models import Sandbox
from sandboxes.providers import SandboxGone, get_sandbox_provider
from sandboxes.tools import tool_execute
from sandboxes.workspace import PathRefused, Workspace, WorkspaceError
from tests.sandboxes.conftest import git

PROVIDERS = ["local", "daytona"]


@pytest.fixture(params=PROVIDERS)
def provider_name(request, sandbox_root):
    if request.param == "daytona":
        request.getfixturevalue("fake_daytona")
    return request.param


def new_provider(name: str):
    """The provider as a new process would build it (for Daytona: a new SDK client)."""
    if name == "daytona":
        from sandboxes.providers.daytona import reset_clients

        reset_clients()
    return get_sandbox_provider(name)


@pytest.fixture
def spec_repo(git_repo) -> tuple[Path, str]:
    """git_repo with a spec branch one commit ahead of main (SPEC.md), main checked out."""
    git("checkout", "--quiet", "-b", "omoi/spec-1", cwd=git_repo)
    (git_repo / "SPEC.md").write_text("spec branch\n")
    git("add", "-A", cwd=git_repo)
    git("commit", "--quiet", "-m", "spec", cwd=git_repo)
    spec_head = git("rev-parse", "HEAD", cwd=git_repo).strip()
    git("checkout", "--quiet", "main", cwd=git_repo)
    return git_repo, spec_head


def acquire(provider, repo: Path, *, ref: str = "main", branch: str | None = "omoi/task-1"):
    sandbox = Sandbox.objects.create(provider=provider.name)
    return sandbox, provider.acquire(sandbox=sandbox, source=str(repo), ref=ref, branch=branch)


def out(result) -> str:
    assert result.exit_code == 0, result.as_text()
    return result.stdout.strip()


# --- acquire -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_acquire_checks_out_the_ref_on_a_new_branch(provider_name, spec_repo):
    repo, spec_head = spec_repo
    provider = new_provider(provider_name)

    _, workspace = acquire(provider, repo, ref="omoi/spec-1", branch="omoi/task-2")
    _, detached = acquire(provider, repo, ref="main", branch=None)

    assert out(workspace.git("rev-parse", "HEAD")) == spec_head
    assert out(workspace.git("symbolic-ref", "--short", "HEAD")) == "omoi/task-2"
    assert workspace.read_file("SPEC.md") == "     1\tspec branch"
    assert out(workspace.git("status", "--porcelain")) == ""
    assert out(detached.git("rev-parse", "HEAD")) == git("rev-parse", "main", cwd=repo).strip()
    assert out(detached.git("rev-parse", "--abbrev-ref", "HEAD")) == "HEAD"
    assert isinstance(workspace, Workspace)
    # Local: whatever this machine's probe found (bubblewrap where it works); Daytona: always.
    assert workspace.confined is provider.confined
    assert provider.confined or provider_name == "local"


@pytest.mark.django_db
def test_acquire_again_keeps_the_work_in_progress(provider_name, git_repo):
    provider = new_provider(provider_name)
    sandbox, workspace = acquire(provider, git_repo)
    workspace.write_file("wip.txt", "in progress\n")

    again = new_provider(provider_name).acquire(sandbox=sandbox, source=str(git_repo), ref="main", branch="omoi/task-1")

    assert again.read_file("wip.txt") == "     1\tin progress"
    assert out(again.git("status", "--porcelain")) == "?? wip.txt"


# --- tools ---------------------------------------------------------------------------------------

TOOL_CALLS = [
    ("list_files", {"path": "."}),
    ("list_files", {"path": "calc"}),
    ("list_files", {"path": "calc/ops.py"}),
    ("list_files", {"path": "missing"}),
    ("list_files", {"path": "../"}),
    ("read_file", {"path": "calc/ops.py"}),
    ("read_file", {"path": "long.txt", "start_line": 10, "end_line": 12}),
    ("read_file", {"path": "long.txt"}),
    ("read_file", {"path": "long.txt", "start_line": 2999}),
    ("read_file", {"path": "long.txt", "start_line": 5000}),
    ("read_file", {"path": "long.txt", "start_line": 5, "end_line": 2}),
    ("read_file", {"path": "blob.bin"}),
    ("read_file", {"path": "calc"}),
    ("read_file", {"path": "nothing.py"}),
    ("read_file", {"path": "empty.txt"}),
    ("read_file", {"path": "leak"}),
    ("read_file", {"path": "rootlink/etc/passwd"}),
    ("read_file", {"path": "/etc/passwd"}),
    ("read_file", {"path": "a\x00b"}),
    ("write_file", {"path": "calc/mul.py", "content": "def mul(a, b):\n    return a * b\n"}),
    ("write_file", {"path": "calc/mul.py", "content": "def mul(a, b):\n    return b * a"}),
    ("write_file", {"path": "deep/new/dir/x.txt", "content": ""}),
    ("write_file", {"path": ".git/config", "content": "[core]\n"}),
    ("write_file", {"path": "../escape.txt", "content": "x"}),
    ("write_file", {"path": "leak", "content": "x"}),
    ("write_file", {"path": "calc", "content": "x"}),
    ("write_file", {"path": "bad.txt", "content": "\udfff"}),
    ("edit_file", {"path": "calc/ops.py", "old": "a + b", "new": "b + a"}),
    ("edit_file", {"path": "calc/ops.py", "old": "not there", "new": "x"}),
    ("edit_file", {"path": "twice.txt", "old": "same", "new": "other"}),
    ("edit_file", {"path": "calc/ops.py", "old": "", "new": "x"}),
    ("edit_file", {"path": "calc/ops.py", "old": "x", "new": "x"}),
    ("edit_file", {"path": "blob.bin", "old": "a", "new": "b"}),
    ("edit_file", {"path": "nothing.py", "old": "a", "new": "b"}),
    ("search", {"pattern": "def "}),
    ("search", {"pattern": "return", "path": "calc"}),
    ("search", {"pattern": "line 2\\d\\d\\b", "path": "long.txt"}),
    ("search", {"pattern": "zzz-no-match"}),
    ("search", {"pattern": "(unclosed"}),
    ("search", {"pattern": "x" * 1001}),
    ("search", {"pattern": "root:", "path": "rootlink/etc"}),
    ("list_files", {"path": "."}),
    ("run_command", {"command": "env"}),
    ("read_file", {"path": 42}),
    ("write_file", {"path": "x.txt"}),
]


def build_fixture_content(workspace) -> None:
    """The same extra content in any workspace, made through the workspace itself."""
    workspace.write_file("long.txt", "".join(f"line {n}\n" for n in range(1, 3001)))
    workspace.write_file("twice.txt", "same\nsame\n")
    workspace.write_file("empty.txt", "")
    result = workspace.run_command("printf 'a\\0b' > blob.bin && ln -s /etc/passwd leak && ln -s / rootlink")
    assert result.exit_code == 0, result.as_text()


@pytest.mark.django_db
def test_every_tool_answers_alike_on_both_providers(git_repo, sandbox_root, fake_daytona):
    """Same repository, same calls, one workspace per provider: the same answers, errors and
    refusals, word for word."""
    workspaces = {name: acquire(new_provider(name), git_repo)[1] for name in PROVIDERS}
    answers = {}
    for name, workspace in workspaces.items():
        build_fixture_content(workspace)
        answers[name] = [tool_execute(workspace=workspace, name=tool, tool_input=args) for tool, args in TOOL_CALLS]

    for call, local, daytona in zip(TOOL_CALLS, answers["local"], answers["daytona"], strict=True):
        assert (daytona.content, daytona.is_error, daytona.refused, daytona.meta) == (
            local.content,
            local.is_error,
            local.refused,
            local.meta,
        ), call
    # The calls meant what they say (a broken fixture would make both sides agree on nothing).
    by_call = dict(zip(range(len(TOOL_CALLS)), answers["daytona"], strict=True))
    assert by_call[15].refused and "outside the workspace" in by_call[15].content
    assert by_call[19].content == "created calc/mul.py (32 bytes, 2 lines)"
    assert by_call[19].meta == {"path": "calc/mul.py"}
    assert by_call[22].refused and "inside .git" in by_call[22].content
    assert by_call[26].content == "content is not valid Unicode text: surrogates not allowed at position 0"
    assert by_call[29].content.startswith("old text found 2 times in twice.txt")
    assert "long.txt:200: line 200" in by_call[36].content
    assert by_call[7].content.endswith("read more with start_line=2001]")
    assert by_call[42].refused


@pytest.mark.django_db
def test_large_writes_and_reads_cross_the_boundary_intact(provider_name, git_repo):
    provider = new_provider(provider_name)
    _, workspace = acquire(provider, git_repo)
    content = "".join(f"{n:08d} ünïcode ✓\n" for n in range(40_000))

    answer = workspace.write_file("big.txt", content)

    assert answer == f"created big.txt ({len(content.encode())} bytes, 40000 lines)"
    assert out(workspace.run_command("sha256sum big.txt")).split()[0] == _sha256(content.encode())
    tail = workspace.read_file("big.txt", start_line=39_999)
    assert tail == " 39999\t00039998 ünïcode ✓\n 40000\t00039999 ünïcode ✓"


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# --- commands ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_commands_report_exit_codes_and_both_streams(provider_name, git_repo):
    provider = new_provider(provider_name)
    _, workspace = acquire(provider, git_repo)

    ok = workspace.run_command("echo out; echo err >&2")
    failed = workspace.run_command("echo partial; exit 3")
    quoted = workspace.run_command("printf '%s|' \"a b\" 'c  d' $'e\\tf'")
    here = workspace.run_command("pwd; ls")

    assert (ok.exit_code, ok.stdout, ok.stderr, ok.timed_out) == (0, "out\n", "err\n", False)
    assert (failed.exit_code, failed.stdout, failed.timed_out) == (3, "partial\n", False)
    assert quoted.stdout == "a b|c  d|e\tf|"
    # The workspace as commands see it (OMOI_WORKSPACE): /workspace behind bubblewrap, the
    # repository's path in a Daytona sandbox.
    assert here.stdout.splitlines()[0] == workspace.command_env()["OMOI_WORKSPACE"]
    assert here.stdout.splitlines()[1:] == ["README.md", "calc", "tests"]


@pytest.mark.django_db
def test_a_timeout_kills_the_command_and_keeps_what_it_printed(provider_name, git_repo):
    provider = new_provider(provider_name)
    _, workspace = acquire(provider, git_repo)

    result = workspace.run_command("echo before; echo warn >&2; sleep 30; echo after", timeout_s=1)

    assert (result.exit_code, result.timed_out) == (-9, True)
    assert (result.stdout, result.stderr) == ("before\n", "warn\n")
    assert result.duration_s < 10
    assert "exit code -9 (timed out; the command was killed)" in result.as_text()


@pytest.mark.django_db
def test_nothing_a_command_starts_in_the_background_outlives_it(provider_name, git_repo):
    provider = new_provider(provider_name)
    _, workspace = acquire(provider, git_repo)

    started = workspace.run_command("(sleep 1; echo late > late.txt) & echo started")
    later = workspace.run_command("sleep 2; test -e late.txt")

    assert started.stdout == "started\n"
    assert later.exit_code == 1


@pytest.mark.django_db
def test_a_long_output_keeps_its_tail(provider_name, git_repo):
    provider = new_provider(provider_name)
    _, workspace = acquire(provider, git_repo)

    result = workspace.run_command("seq 1 20000")

    assert result.stdout.startswith("… [")
    assert result.stdout.endswith("19999\n20000\n")
    assert "earlier bytes omitted]" in result.stdout.splitlines()[0]


@pytest.mark.django_db
def test_commands_see_the_same_variables_on_both_providers_and_no_secret(
    git_repo, sandbox_root, fake_daytona, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-contract-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_contract_secret")
    names = {}
    for name in PROVIDERS:
        _, workspace = acquire(new_provider(name), git_repo)
        listing = workspace.run_command("compgen -e | sort; cat /proc/self/environ | tr '\\0' '\\n'")
        assert "secret" not in listing.stdout
        names[name] = set(out(workspace.run_command("compgen -e")).split()) - {"PWD", "OLDPWD", "SHLVL", "_"}

    assert names["daytona"] == names["local"]
    assert "OMOI_WORKSPACE" in names["daytona"]
    assert not any("KEY" in n or "TOKEN" in n for n in names["daytona"])


# --- git inside, bundles out, bytes ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_commit_made_inside_leaves_as_a_bundle_the_host_fetches(provider_name, git_repo, tmp_path):
    provider = new_provider(provider_name)
    base = git("rev-parse", "main", cwd=git_repo).strip()
    _, workspace = acquire(provider, git_repo, branch="omoi/task-7")
    workspace.write_file("calc/mul.py", "def mul(a, b):\n    return a * b\n")

    assert workspace.git("add", "-A").exit_code == 0
    assert workspace.git("commit", "--quiet", "-m", "Add mul").exit_code == 0
    assert workspace.git("bundle", "create", "--quiet", ".git/omoi-out.bundle", f"{base}..omoi/task-7").exit_code == 0
    data = workspace.read_bytes(".git/omoi-out.bundle", limit=10_000_000)
    bundle = tmp_path / "out.bundle"
    bundle.write_bytes(data)
    git("fetch", "--quiet", str(bundle), "omoi/task-7:refs/heads/imported", cwd=git_repo)

    assert git("show", "imported:calc/mul.py", cwd=git_repo) == "def mul(a, b):\n    return a * b\n"
    assert git("log", "--format=%s|%an", "-1", "imported", cwd=git_repo).strip() == "Add mul|Omoi agent"
    assert git("rev-parse", "imported^", cwd=git_repo).strip() == base


@pytest.mark.django_db
def test_bytes_go_in_and_out_within_limits(provider_name, git_repo):
    provider = new_provider(provider_name)
    _, workspace = acquire(provider, git_repo)
    payload = bytes(range(256)) * 64

    workspace.write_bytes(".git/omoi-in.bundle", payload)
    workspace.write_bytes("incoming/data.bin", b"\x00\xff")

    assert workspace.read_bytes(".git/omoi-in.bundle", limit=len(payload)) == payload
    assert out(workspace.run_command("wc -c < incoming/data.bin")) == "2"
    with pytest.raises(WorkspaceError, match="is larger than 100 bytes"):
        workspace.read_bytes(".git/omoi-in.bundle", limit=100)
    with pytest.raises(WorkspaceError, match="cannot read missing.bin"):
        workspace.read_bytes("missing.bin", limit=100)
    with pytest.raises(WorkspaceError, match="calc is not a regular file"):
        workspace.read_bytes("calc", limit=100)
    with pytest.raises(PathRefused, match="outside the workspace"):
        workspace.read_bytes("../outside", limit=100)
    with pytest.raises(PathRefused, match="outside the workspace"):
        workspace.write_bytes("/tmp/omoi-outside.bin", b"x")


# --- across processes, and the end ---------------------------------------------------------------


@pytest.mark.django_db
def test_another_process_reopens_the_workspace(provider_name, git_repo):
    sandbox, workspace = acquire(new_provider(provider_name), git_repo)
    workspace.write_file("note.txt", "from turn 1\n")
    sandbox.external_id = getattr(workspace, "external_id", "")
    sandbox.workspace_path = str(workspace.root)
    sandbox.save()

    reopened = new_provider(provider_name).attach(sandbox=Sandbox.objects.get(pk=sandbox.pk))
    new_provider(provider_name).touch(sandbox=sandbox)

    assert reopened.read_file("note.txt") == "     1\tfrom turn 1"
    assert str(reopened.root) == str(workspace.root)


@pytest.mark.django_db
def test_release_removes_the_workspace_and_is_idempotent(provider_name, git_repo):
    provider = new_provider(provider_name)
    sandbox, workspace = acquire(provider, git_repo)
    sandbox.workspace_path = str(workspace.root)
    sandbox.save()

    provider.release(sandbox=sandbox)
    new_provider(provider_name).release(sandbox=sandbox)

    with pytest.raises(SandboxGone):
        new_provider(provider_name).attach(sandbox=sandbox)
