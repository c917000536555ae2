"""Omoi's runner inside a remote sandbox: one request in, one JSON answer out.

The host uploads this file and fstools.py into the sandbox and runs
`python3 -I sandbox_runner.py REQUEST` through the provider's process API. REQUEST is
`b64:<urlsafe base64 of the JSON request>` or `@<path of an uploaded JSON file>` (deleted once
read): plain tokens, so the command means the same whether the sandbox's daemon splits it on
spaces or hands it to a shell. The answer is the last stdout line starting with RESULT_MARKER.

Requests (`op`):
- `tool`: a model-facing file tool of fstools.DirectoryTools over `root` (`name`, `args`; with
  `display_of`, also that path's workspace-relative form). The same code as the local
  provider's, so the model reads the same text, limits and refusals.
  Answers {"ok": text}, or {"refused": reason}, {"error": message}, {"exception": "OSError" |
  "ValueError", "message": ...}, the outcomes the tool layer tells apart.
- `run`: `bash -c command` in `root` with exactly the environment `env` (built by the host from
  scratch), in a session of its own, under resource limits, killed with its whole process group
  at `timeout` and again when it ends. Its output goes to files in `run_dir` as it is written, so
  a partial output survives whatever happens to the call that started it; `collect` reads it.
- `collect`: the outcome of a `run` whose call was lost (the API timed out, the connection
  dropped): its recorded result, or, when the command still runs, the command killed and the
  tails of what it wrote.
- `prepare`: the workspace cloned from an uploaded git bundle and checked out at `sha` on
  `branch` (detached when null), built beside `root` and renamed into place, so a crash leaves
  no half workspace. Idempotent: an existing `root/.git` is kept.

Standard library only, and Python 3.8 compatible: it runs on whatever python3 the sandbox's
image has.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fstools  # noqa: E402  (beside this file in the sandbox, not an installed package)

RESULT_MARKER = "OMOI-RUNNER-RESULT "
CPU_SECONDS_BEYOND_TIMEOUT = 10
GIT_TIMEOUT_S = 600


class RequestError(Exception):
    """The request itself is malformed (a bug on the host's side, never the model's)."""


def load_request(argument: str) -> dict:
    if argument.startswith("b64:"):
        data = base64.urlsafe_b64decode(argument[4:].encode("ascii"))
    elif argument.startswith("@"):
        path = argument[1:]
        with open(path, "rb") as handle:
            data = handle.read()
        os.unlink(path)
    else:
        raise RequestError("the request must be b64:<data> or @<path>")
    request = json.loads(data.decode("utf-8"))
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise RequestError("the request must be an object with an op")
    return request


# --- tools ------------------------------------------------------------------------------------

TOOLS = {"list_files", "read_file", "write_file", "edit_file", "search", "display_path"}


def op_tool(request: dict) -> dict:
    name = request["name"]
    if name not in TOOLS:
        raise RequestError(f"unknown tool {name!r}")
    tools = fstools.DirectoryTools(request["root"])
    try:
        answer = {"ok": getattr(tools, name)(*request.get("args", []))}
        if request.get("display_of") is not None:
            answer["display"] = tools.display_path(request["display_of"])
        return answer
    except fstools.PathRefused as exc:
        return {"refused": exc.reason}
    except fstools.WorkspaceError as exc:
        return {"error": str(exc)}
    except OSError as exc:
        return {"exception": "OSError", "message": str(exc)}
    except ValueError as exc:
        return {"exception": "ValueError", "message": str(exc)}


# --- commands ---------------------------------------------------------------------------------


def _set_limit(which: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(which, (soft, hard))


def _limit_resources(cpu_seconds: int, limits: dict) -> None:
    """Runs in the child between fork and exec."""
    _set_limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 5)
    _set_limit(resource.RLIMIT_AS, int(limits["address_space_bytes"]))
    _set_limit(resource.RLIMIT_FSIZE, int(limits["file_size_bytes"]))
    _set_limit(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    _set_limit(resource.RLIMIT_CORE, 0)
    if limits.get("processes"):
        # Counted per user (all processes of the sandbox user), enforced for every user but root.
        _set_limit(resource.RLIMIT_NPROC, int(limits["processes"]))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            total = handle.tell()
            handle.seek(max(0, total - limit))
            data = handle.read(limit)
    except OSError:
        return ""
    return fstools.tail_text(data, total)


def _write_json(path: str, value: dict) -> None:
    partial = path + ".partial"
    with open(partial, "w") as handle:
        json.dump(value, handle)
    os.replace(partial, path)


def _prune_finished_runs(run_dir: str) -> None:
    """Remove the output of earlier runs that finished (their result was answered or collected)."""
    parent = os.path.dirname(run_dir)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        other = os.path.join(parent, name)
        if other != run_dir and os.path.exists(os.path.join(other, "result.json")):
            shutil.rmtree(other, ignore_errors=True)


def op_run(request: dict) -> dict:
    run_dir = request["run_dir"]
    timeout = float(request["timeout"])
    limits = request["limits"]
    os.makedirs(run_dir, exist_ok=True)
    _prune_finished_runs(run_dir)
    home_tmp = request["env"].get("TMPDIR")
    if home_tmp:
        os.makedirs(home_tmp, exist_ok=True)
    cpu_seconds = int(timeout) + CPU_SECONDS_BEYOND_TIMEOUT
    started = time.monotonic()
    with open(os.path.join(run_dir, "started"), "w") as handle:
        handle.write(repr(time.time()))
    with open(os.path.join(run_dir, "stdout"), "wb") as out, open(os.path.join(run_dir, "stderr"), "wb") as err:
        process = subprocess.Popen(
            ["bash", "-c", request["command"]],
            cwd=request["root"],
            env=request["env"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            preexec_fn=lambda: _limit_resources(cpu_seconds, limits),
        )
    with open(os.path.join(run_dir, "pid"), "w") as handle:
        handle.write(str(process.pid))

    # The daemon may end this runner (its own timeout, a stopped sandbox): take the command down
    # with it, since the command's session is not the runner's process group.
    def terminate(signum, frame):
        _kill_group(process.pid)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    timed_out = False
    try:
        exit_code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process.pid)
        exit_code = process.wait()
    duration = time.monotonic() - started
    _kill_group(process.pid)
    result = {
        "exit_code": exit_code,
        "stdout": _tail(os.path.join(run_dir, "stdout"), int(limits["stdout_chars"])),
        "stderr": _tail(os.path.join(run_dir, "stderr"), int(limits["stderr_chars"])),
        "timed_out": timed_out,
        "duration_s": round(duration, 3),
    }
    _write_json(os.path.join(run_dir, "result.json"), result)
    return {"ok": result}


def op_collect(request: dict) -> dict:
    run_dir = request["run_dir"]
    limits = request["limits"]
    result_path = os.path.join(run_dir, "result.json")
    if not os.path.exists(result_path):
        try:
            with open(os.path.join(run_dir, "pid")) as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None:
            _kill_group(pid)
        # A runner still alive records the result as soon as its command is gone.
        deadline = time.monotonic() + 5
        while not os.path.exists(result_path) and time.monotonic() < deadline:
            time.sleep(0.05)
    if os.path.exists(result_path):
        with open(result_path) as handle:
            result = json.load(handle)
        result["timed_out"] = True
        return {"ok": result}
    try:
        with open(os.path.join(run_dir, "started")) as handle:
            duration = time.time() - float(handle.read().strip())
    except (OSError, ValueError):
        duration = 0.0
    result = {
        "exit_code": -signal.SIGKILL,
        "stdout": _tail(os.path.join(run_dir, "stdout"), int(limits["stdout_chars"])),
        "stderr": _tail(os.path.join(run_dir, "stderr"), int(limits["stderr_chars"])),
        "timed_out": True,
        "duration_s": round(duration, 3),
    }
    _write_json(result_path, result)
    return {"ok": result}


# --- the workspace ----------------------------------------------------------------------------


def _git(args: list, *, cwd: str, env: dict, options: list) -> None:
    completed = subprocess.run(
        ["git", *options, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=GIT_TIMEOUT_S,
    )
    if completed.returncode != 0:
        message = (completed.stderr or completed.stdout).decode("utf-8", errors="replace").strip()
        raise RequestError(f"git {args[0]} failed: {message}")


def op_prepare(request: dict) -> dict:
    root = request["root"].rstrip("/")
    env = request["env"]
    options = list(request["git_options"])
    if os.path.isdir(os.path.join(root, ".git")):
        return {"ok": {"existing": True}}
    partial = root + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    if env.get("TMPDIR"):
        os.makedirs(env["TMPDIR"], exist_ok=True)
    try:
        _git(["clone", "--quiet", "--no-checkout", request["bundle"], partial], cwd=parent, env=env, options=options)
        if request.get("branch"):
            checkout = ["checkout", "--quiet", "-B", request["branch"], request["sha"]]
        else:
            checkout = ["checkout", "--quiet", "--detach", request["sha"]]
        _git(checkout, cwd=partial, env=env, options=options)
        os.rename(partial, root)
    except (RequestError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        return {"error": str(exc)}
    # This bundle, and any an earlier attempt (a killed worker) uploaded, are no longer needed.
    incoming = os.path.dirname(request["bundle"])
    for name in os.listdir(incoming):
        if name.endswith(".bundle"):
            try:
                os.unlink(os.path.join(incoming, name))
            except OSError:
                pass
    return {"ok": {"existing": False}}


OPERATIONS = {"tool": op_tool, "run": op_run, "collect": op_collect, "prepare": op_prepare}


def main(argv: list) -> int:
    try:
        if len(argv) != 2:
            raise RequestError("usage: sandbox_runner.py REQUEST")
        request = load_request(argv[1])
        operation = OPERATIONS.get(request["op"])
        if operation is None:
            raise RequestError(f"unknown op {request['op']!r}")
        answer = operation(request)
    except (RequestError, KeyError, TypeError, ValueError, OSError) as exc:
        answer = {"failure": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(RESULT_MARKER + json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
