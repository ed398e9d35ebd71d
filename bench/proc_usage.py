"""CPU time and resident memory of a process and its descendants, read from /proc (Linux).

A benchmark of a long-running server needs its cost over a window, not a snapshot: two
`cpu_seconds()` readings apart give cores used (seconds of CPU per second of wall time). Children
count too (a server that forks helpers costs what they cost): live descendants are found through
/proc's parent links, and children already reaped are in the parent's cutime/cstime.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid`, its live descendants and its reaped children."""
    total = 0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is not None:
            # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name.
            total += sum(int(value) for value in fields[11:15])
    return total / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its live descendants (VmRSS)."""
    return _status_bytes(pid, "VmRSS:")


def highest_rss_bytes(pid: int) -> int:
    """The highest resident memory each of `pid` and its live descendants ever had (VmHWM),
    summed: what a memory limit must allow, bursts included, which sampling `rss_bytes` misses."""
    return _status_bytes(pid, "VmHWM:")


def _status_bytes(pid: int, field: str) -> int:
    total = 0
    for member in descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith(field):
                total += int(line.split()[1]) * 1024
    return total
