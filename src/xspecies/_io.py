"""Atomic writes: a file or folder appears complete at its destination, or not at all.

Every writer of the package builds its result beside the destination (same folder, hidden temporary
name), flushes it to disk and only then renames it into place, so an interruption (an error, Ctrl-C,
``kill``, a full disk) leaves the previous file or folder intact and readable.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_dir", "atomic_entries", "atomic_path"]


def _temporary_name(path: Path, tag: str) -> Path:
    """A hidden name beside ``path`` that keeps its suffix (writers pick the format from it)."""
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}{path.suffix}")


def _fsync_path(path: Path) -> None:
    """Flush a file, or every file of a folder and the folder itself, to disk."""
    if path.is_dir():
        for child in path.rglob("*"):
            if child.is_file():
                _fsync_path(child)
        flags = os.O_RDONLY
    else:
        flags = os.O_RDWR
    try:
        fd = os.open(path, flags)
    except OSError:  # a folder cannot be opened on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # folders cannot be fsynced on every file system
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path beside ``path``, then rename it into place.

    The caller writes the whole file to the yielded path (any writer that takes a path: h5ad, CSV,
    figures, ``torch.save``). When the block finishes, the file is flushed to disk and renamed to
    ``path`` (:func:`os.replace`, atomic on one file system); if the block raises or is interrupted,
    the temporary file is removed and an existing ``path`` is left as it was.

    Parameters
    ----------
    path
        The destination; its folder must exist.

    Yields
    ------
    pathlib.Path
        The temporary path to write to (same folder and suffix as ``path``).

    Examples
    --------
    >>> import pandas as pd
    >>> with atomic_path("report.csv") as tmp:
    ...     pd.DataFrame({"recall": [0.9]}).to_csv(tmp, index=False)
    >>> Path("report.csv").read_text().split()
    ['recall', '0.9']
    >>> with atomic_path("report.csv") as tmp:  # a failed write leaves the previous file
    ...     raise RuntimeError("interrupted")
    Traceback (most recent call last):
    ...
    RuntimeError: interrupted
    >>> Path("report.csv").read_text().split()
    ['recall', '0.9']
    """
    path = Path(path).resolve()
    tmp = _temporary_name(path, "tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written for {path}")
        _fsync_path(tmp)
        tmp.replace(path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_path(path.parent)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def atomic_dir(
    path: str | os.PathLike,
    overwrite: bool = False,
    keep: Callable[[str], bool] | None = None,
) -> Iterator[Path]:
    """Write a folder atomically: build it beside ``path``, then swap it in.

    The caller writes the new folder's content into the yielded temporary folder. When the block
    finishes, the files are flushed to disk, a previous folder at ``path`` is renamed aside, the new
    folder is renamed to ``path`` and only then is the previous one removed. If the block raises or is
    interrupted, the temporary folder is removed and the previous folder is left as it was; if the
    final rename fails, the previous folder is renamed back.

    Parameters
    ----------
    path
        The destination folder.
    overwrite
        Replace an existing folder; otherwise an existing ``path`` raises :class:`FileExistsError`.
    keep
        Called with the name of every entry of the previous folder: entries for which it returns True
        are carried over into the new folder (hard links when possible, else copies) before the block
        runs, so files the writer does not own survive the swap.

    Yields
    ------
    pathlib.Path
        The temporary folder to write to.

    Examples
    --------
    >>> with atomic_dir("models/context") as tmp:
    ...     _ = (tmp / "notes.txt").write_text("trained on 2k cells")
    >>> with atomic_dir("models/context", overwrite=True, keep=lambda name: name == "notes.txt") as tmp:
    ...     _ = (tmp / "model.pt").write_bytes(b"weights")
    >>> sorted(p.name for p in Path("models/context").iterdir())
    ['model.pt', 'notes.txt']
    """
    path = Path(path).resolve()
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists: pass overwrite=True to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, "new")
    try:
        tmp.mkdir()
        if keep is not None and path.is_dir():
            for entry in path.iterdir():
                if keep(entry.name):
                    if entry.is_dir():
                        shutil.copytree(entry, tmp / entry.name, copy_function=_link_or_copy)
                    else:
                        _link_or_copy(str(entry), str(tmp / entry.name))
        yield tmp
        _fsync_path(tmp)
        _swap_in(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_path(path.parent)


def _swap_in(new: Path, path: Path) -> None:
    """Rename ``new`` to ``path``; a previous folder at ``path`` is removed only after the rename."""
    old = _temporary_name(path, "old") if path.is_dir() else None
    if old is not None:
        path.replace(old)
    try:
        new.replace(path)
    except BaseException:
        if old is not None:
            old.replace(path)
        raise
    if old is not None:
        _remove(old)


def _move_all(staging: Path, folder: Path) -> None:
    """Rename every entry of ``staging`` into ``folder``, all or none.

    Every destination is checked before the first rename. An entry being replaced is first set aside
    in ``staging``; if a rename fails, the entries already moved in are removed and the set-aside ones
    put back, so ``folder`` holds either all the new entries or its previous ones.
    """
    entries = sorted(staging.iterdir())
    for entry in entries:
        destination = folder / entry.name
        if destination.exists() and destination.is_dir() != entry.is_dir():
            kind = "a folder" if destination.is_dir() else "not a folder"
            raise FileExistsError(f"{destination} exists and is {kind}: it is not replaced.")
    previous = staging / f".previous-{uuid.uuid4().hex[:8]}"
    previous.mkdir()
    done: list[tuple[Path, Path | None]] = []  # (destination, its previous version set aside)
    try:
        for entry in entries:
            destination = folder / entry.name
            kept = None
            if destination.exists() or destination.is_symlink():
                kept = previous / entry.name
                destination.replace(kept)
            done.append((destination, kept))
            entry.replace(destination)
    except BaseException:
        for destination, kept in reversed(done):
            _remove(destination)
            if kept is not None:
                kept.replace(destination)
        raise


@contextmanager
def atomic_entries(folder: str | os.PathLike) -> Iterator[Path]:
    """Write several files and folders into ``folder``, all replaced only once all are complete.

    The caller writes every output into the yielded staging folder (a hidden folder inside ``folder``). When the block
    finishes, the outputs are flushed to disk and each is renamed into ``folder`` (created if needed),
    replacing an entry of the same name; other entries of ``folder`` are left alone. If the block raises
    or is interrupted, the staging folder is removed and ``folder`` is left as it was; if one of the
    renames fails, the entries already renamed are taken back and the replaced ones restored.

    Parameters
    ----------
    folder
        The output folder.

    Yields
    ------
    pathlib.Path
        The staging folder to write to.

    Examples
    --------
    >>> with atomic_entries("results") as tmp:
    ...     _ = (tmp / "table.csv").write_text("type,recall")
    ...     (tmp / "model").mkdir()
    >>> sorted(p.name for p in Path("results").iterdir())
    ['model', 'table.csv']
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder.")
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".xspecies-staging-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        yield staging
        _fsync_path(staging)
        _move_all(staging, folder)
        _fsync_path(folder)
    finally:
        _remove(staging)
