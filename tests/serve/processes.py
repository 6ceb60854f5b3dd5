"""Processes of a real `hyperrec serve` started by a test: its family (session, group, descendants) from /proc."""

from __future__ import annotations

from pathlib import Path


def stat(pid: int) -> tuple[int, int, int, int] | None:
    """(parent, process group, session, start time) of a live process, from /proc; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])


def processes() -> dict[int, tuple[int, int, int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat(int(entry.name))) is not None:
            found[int(entry.name)] = fields
    return found


def family(leader: int) -> dict[int, int]:
    """pid -> start time of every live process of `leader`'s session or group, or descended from it."""
    table = processes()
    members = {pid for pid, (_, group, session, _) in table.items() if leader in (group, session)} | {leader}
    grew = True
    while grew:
        children = {pid for pid, (parent, *_) in table.items() if parent in members} - members
        members |= children
        grew = bool(children)
    return {pid: table[pid][3] for pid in members if pid in table}


def alive(recorded: dict[int, int]) -> list[int]:
    """The recorded processes still running (the same ones: same start time, not a reused pid)."""
    return [pid for pid, started in recorded.items() if (fields := stat(pid)) is not None and fields[3] == started]


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
    except OSError:
        return "?"
