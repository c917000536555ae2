"""The evidence as data (tickets/evidence.py): changed lines from git's diff, coverage of those lines,
the verdict of a test file's runs before and after a change, and what goes back to the model."""

from tickets.evidence import (
    NOT_GREEN_AFTER,
    PASSED_BEFORE,
    RED_TO_GREEN,
    changed_lines,
    coverage_summary,
    evidence_findings,
    file_verdict,
    line_ranges,
    name_status,
    red_green_summary,
    run_record,
    unquote_git_path,
)

DIFF = """diff --git a/textkit/stats.py b/textkit/stats.py
new file mode 100644
index 0000000..1111111
--- /dev/null
+++ b/textkit/stats.py
@@ -0,0 +1,4 @@
+import re
+
+def word_count(text):
+    return len(re.findall(r"\\w+", text))
diff --git a/textkit/core.py b/textkit/core.py
index 2222222..3333333 100644
--- a/textkit/core.py
+++ b/textkit/core.py
@@ -3 +3 @@ def a():
-    return 1
+    return 2
@@ -10,0 +11,2 @@ def b():
+def c():
+    return 3
@@ -20,2 +22,0 @@ def d():
-gone
-gone too
diff --git a/old.py b/old.py
deleted file mode 100644
--- a/old.py
+++ /dev/null
@@ -1,2 +0,0 @@
-x = 1
-y = 2
diff --git "a/odd\\tname.py" "b/odd\\tname.py"
--- "a/odd\\tname.py"
+++ "b/odd\\tname.py"
@@ -1 +1 @@
-a
+b
"""


def test_changed_lines_are_the_new_versions_added_lines():
    assert changed_lines(DIFF) == {
        "textkit/stats.py": [1, 2, 3, 4],
        "textkit/core.py": [3, 11, 12],
        "odd\tname.py": [1],
    }


def test_git_quoted_paths_are_read():
    assert unquote_git_path('"b/caf\\303\\251.py"') == "b/café.py"
    assert unquote_git_path("plain.py") == "plain.py"


def test_name_status():
    assert name_status("M\0a.py\0A\0tests/test_a.py\0D\0gone.py\0") == {
        "a.py": "M",
        "tests/test_a.py": "A",
        "gone.py": "D",
    }
    assert name_status("") == {}


def test_line_ranges():
    assert line_ranges([9, 3, 4, 5, 12, 11]) == "3-5, 9, 11-12"
    assert line_ranges([]) == ""


def test_coverage_counts_only_executable_changed_lines():
    summary = coverage_summary(
        changed={"textkit/stats.py": [1, 2, 3, 4, 5, 6], "textkit/gone.py": [1]},
        report={
            "textkit/stats.py": {"statements": [1, 3, 4, 6, 9], "missing": [4, 6, 9]},
            "textkit/gone.py": {"error": "NoSource: No source for code"},
        },
        tool="coverage.py 7",
    )
    stats, gone = sorted(summary["files"], key=lambda f: f["path"], reverse=True)
    assert (stats["changed"], stats["covered"], stats["percent"], stats["never_run"]) == (4, 2, 50.0, "4, 6")
    assert gone["status"] == "not_measured" and "NoSource" in gone["reason"]
    assert (summary["changed"], summary["covered"], summary["percent"]) == (4, 2, 50.0)


def _run(exit_code: int, output: str) -> dict:
    return run_record(command="pytest -- t.py", exit_code=exit_code, output=output, timed_out=False, duration_s=0.5)


def test_verdicts():
    red = _run(2, "E   ImportError: cannot import name 'mul'\n1 error in 0.1s\n")
    failing = _run(1, "1 failed, 2 passed in 0.1s\n")
    green = _run(0, "3 passed in 0.1s\n")
    empty = _run(5, "no tests ran in 0.01s\n")
    assert (red["outcome"], failing["outcome"], green["outcome"], empty["outcome"]) == (
        "error",
        "failed",
        "passed",
        "no_tests",
    )
    assert file_verdict(red, green)[0] == RED_TO_GREEN
    assert file_verdict(failing, green)[0] == RED_TO_GREEN  # a changed file: old tests pass, the new one fails
    assert file_verdict(empty, green)[0] == RED_TO_GREEN  # nothing ran before: not a pass
    assert file_verdict(green, green)[0] == PASSED_BEFORE
    assert file_verdict(red, failing)[0] == NOT_GREEN_AFTER


def test_findings_name_the_file_and_the_base():
    green = _run(0, "2 passed in 0.1s\n")
    red_green = red_green_summary(
        [{"path": "tests/test_vacuous.py", "before": green, "after": dict(green), "verdict": PASSED_BEFORE}],
        before_commit="0123456789abcdef",
    )
    assert "_pass" not in red_green["files"][0]["before"]
    coverage = {
        "files": [{"path": "textkit/stats.py", "status": "measured", "changed": 4, "covered": 2, "never_run": "4, 6"}]
    }
    only_tests = evidence_findings(red_green=red_green, coverage=coverage, coverage_required=False)
    assert len(only_tests) == 1
    assert "tests/test_vacuous.py passed against the code before the change (commit 0123456789ab" in only_tests[0]
    assert "2 passed" in only_tests[0]
    with_coverage = evidence_findings(red_green=red_green, coverage=coverage, coverage_required=True)
    assert with_coverage[1].startswith("textkit/stats.py: changed lines 4, 6 never ran")
