"""Folders flashbench writes into: new, empty, or already its own, never one that holds a user's files.

Standard library only: ``reports`` (the results page) refuses folders the same way runs do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def check_own_folder(folder: Path, ours: Callable[[Path], bool], kind: str, missing: str) -> None:
    """Refuse ``folder`` when it holds an entry that ``ours`` does not accept (a ValueError naming it).

    ``kind`` names what flashbench writes there ("a run directory") and ``missing`` why this
    folder is not one ("no manifest.json"). A folder that does not exist yet, or is empty, is
    accepted.
    """
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {str(folder)!r} is a file; choose a directory")
    if not folder.is_dir():
        return
    foreign = sorted(p.name for p in folder.iterdir() if not ours(p))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"--out {str(folder)!r} is not {kind} ({missing}) and holds {shown}; flashbench "
            f"writes only into a new or empty directory or {kind}: choose another --out"
        )
