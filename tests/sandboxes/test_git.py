from pathlib import Path

import pytest

from sandboxes.git import GitError, clone, ensure_branch, fetch_branch, git_run, merge_into, push
from tests.sandboxes.conftest import git


def commit_file(repo: Path, path: str, content: str, message: str) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(content)
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def sha_of(repo: Path, ref: str) -> str:
    return git("rev-parse", ref, cwd=repo).strip()


def test_git_errors_carry_gits_stderr(git_repo):
    with pytest.raises(GitError) as error:
        git_run("rev-parse", "--verify", "no-such-branch", cwd=git_repo)

    assert error.value.returncode == 128
    assert "Needed a single revision" in error.value.stderr


def test_clone_and_ensure_branch(git_repo, tmp_path):
    dest = tmp_path / "host" / "clone"
    clone(str(git_repo), dest)

    first = ensure_branch(dest, "omoi/spec-1", "main")
    commit_file(git_repo, "x.txt", "x\n", "later")
    again = ensure_branch(dest, "omoi/spec-1", "main")

    assert first == again == sha_of(git_repo, "HEAD~1")
    assert (dest / "calc" / "ops.py").exists()


def test_merge_into_the_checked_out_branch(git_repo):
    git("checkout", "--quiet", "-b", "feature", cwd=git_repo)
    feature = commit_file(git_repo, "calc/mul.py", "def mul(a, b):\n    return a * b\n", "mul")
    git("checkout", "--quiet", "main", cwd=git_repo)
    main = commit_file(git_repo, "README.md", "# Calculator\n\nAdds and more.\n", "readme")

    result = merge_into(git_repo, "feature", "main", "Merge feature")

    assert result.merged is True
    assert result.conflicts == []
    assert result.sha == sha_of(git_repo, "main")
    assert git("log", "-1", "--format=%P|%s", cwd=git_repo).strip() == f"{main} {feature}|Merge feature"
    assert (git_repo / "calc" / "mul.py").exists()
    assert git("status", "--porcelain", cwd=git_repo) == ""

    assert merge_into(git_repo, "feature", "main", "Merge feature again").sha == result.sha


def test_merge_into_a_branch_that_is_not_checked_out_uses_a_temporary_worktree(git_repo):
    git("branch", "spec", cwd=git_repo)
    git("checkout", "--quiet", "-b", "task", cwd=git_repo)
    task = commit_file(git_repo, "calc/mul.py", "def mul(a, b):\n    return a * b\n", "mul")
    git("checkout", "--quiet", "main", cwd=git_repo)
    spec_before = sha_of(git_repo, "spec")

    result = merge_into(git_repo, "task", "spec", "Merge task into spec")

    assert result.merged is True
    assert result.sha == sha_of(git_repo, "spec")
    assert git("log", "-1", "--format=%P", "spec", cwd=git_repo).split() == [spec_before, task]
    assert sha_of(git_repo, "HEAD") == sha_of(git_repo, "main")
    assert not (git_repo / "calc" / "mul.py").exists()
    assert len(git("worktree", "list", cwd=git_repo).splitlines()) == 1


@pytest.mark.parametrize("checked_out", [True, False])
def test_a_conflicting_merge_leaves_the_target_untouched_and_lists_the_files(git_repo, checked_out):
    git("checkout", "--quiet", "-b", "task", cwd=git_repo)
    commit_file(git_repo, "calc/ops.py", "def add(a, b):\n    return b + a\n", "task edit")
    commit_file(git_repo, "README.md", "# Calc\n", "task readme")
    commit_file(git_repo, "calc/new.py", "x = 1\n", "task new file")
    git("checkout", "--quiet", "main", cwd=git_repo)
    commit_file(git_repo, "calc/ops.py", "def add(a, b):\n    return int(a) + int(b)\n", "main edit")
    target_before = commit_file(git_repo, "README.md", "# Calculator (main)\n", "main readme")
    if not checked_out:
        git("checkout", "--quiet", "--detach", cwd=git_repo)

    result = merge_into(git_repo, "task", "main", "Merge task")

    assert (result.merged, result.sha, result.conflicts) == (False, None, ["README.md", "calc/ops.py"])
    assert sha_of(git_repo, "main") == target_before
    assert git("status", "--porcelain", cwd=git_repo) == ""
    assert (git_repo / "calc" / "ops.py").read_text() == "def add(a, b):\n    return int(a) + int(b)\n"
    assert len(git("worktree", "list", cwd=git_repo).splitlines()) == 1


def test_fetch_branch_copies_a_workspace_branch_into_the_host_clone(git_repo, workspace):
    workspace.write_file("calc/mul.py", "def mul(a, b):\n    return a * b\n")
    work = workspace.commit_all("mul")
    host = git_repo.parent / "host"
    clone(str(git_repo), host)

    fetched = fetch_branch(host, workspace.root, "work", "omoi/ticket-1")
    workspace.write_file("calc/div.py", "x = 1\n")
    later = workspace.commit_all("div")
    refetched = fetch_branch(host, workspace.root, "work", "omoi/ticket-1")

    assert fetched == work
    assert refetched == later != work
    assert sha_of(host, "omoi/ticket-1") == later


def test_push_to_a_local_remote_and_the_token_never_lands_in_config(git_repo, tmp_path):
    remote = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", str(remote), cwd=tmp_path)
    git("checkout", "--quiet", "-b", "omoi/spec-1", cwd=git_repo)
    head = commit_file(git_repo, "calc/mul.py", "x = 1\n", "mul")

    push(git_repo, str(remote), "omoi/spec-1", token="ghp_never_stored")

    assert sha_of(remote, "refs/heads/omoi/spec-1") == head
    assert "ghp_never_stored" not in (git_repo / ".git" / "config").read_text()


def test_a_failed_push_does_not_reveal_the_token(git_repo):
    with pytest.raises(GitError) as error:
        push(git_repo, "http://127.0.0.1:9/nothing.git", "main", token="ghp_secret_value", timeout=30)

    assert "ghp_secret_value" not in str(error.value)
    assert "ghp_secret_value" not in error.value.stderr
    assert "ghp_secret_value" not in (git_repo / ".git" / "config").read_text()


def test_host_git_runs_no_hooks_planted_in_a_workspace(workspace):
    hook = workspace.root / ".git" / "hooks" / "post-commit"
    hook.write_text("#!/bin/sh\ntouch hook-ran\n")
    hook.chmod(0o755)
    workspace.write_file("x.txt", "x\n")

    assert workspace.commit_all("with a planted hook") is not None
    assert not (workspace.root / "hook-ran").exists()


@pytest.mark.django_db
def test_a_branch_recorded_twice_keeps_where_it_was_first_recorded():
    """Two steps making a ticket's branch at once: the second learns where the first put it, and
    inside an outer transaction nothing is rolled back by the conflict."""
    from django.db import transaction

    from sandboxes.models import GitRef
    from sandboxes.services.gitstore import ref_create, ref_get

    assert ref_create(scope="spec-1-x", name="omoi/t1-a", sha="a" * 40) == "a" * 40
    with transaction.atomic():
        assert ref_create(scope="spec-1-x", name="omoi/t1-a", sha="b" * 40) == "a" * 40
        GitRef.objects.create(scope="spec-1-x", name="omoi/t2-b", sha="c" * 40)  # the transaction goes on
    assert ref_get(scope="spec-1-x", name="omoi/t1-a") == "a" * 40
    assert ref_get(scope="spec-1-x", name="omoi/t2-b") == "c" * 40
