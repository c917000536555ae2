"""Fault points: named places where this worker's whole process tree can be made to die at once,
as a crashed machine would, to rehearse recovery (the fault-injection tests, bench/chaos.py).

Off unless OMOI_FAULTS names points (comma-separated). Each named point fires once: it leaves a
marker in OMOI_FAULTS_DIR, so a worker restarted with the same environment runs through it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def fault_point(name: str) -> None:
    names = os.environ.get("OMOI_FAULTS", "")
    if not names or name not in names.split(","):
        return
    markers = Path(os.environ.get("OMOI_FAULTS_DIR") or "/tmp")
    markers.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(markers / f"fired-{name}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.killpg(os.getpgrp(), signal.SIGKILL)
