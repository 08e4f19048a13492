"""Download cache shared by the dataset loaders and the online ortholog sources."""

from __future__ import annotations

import os
from pathlib import Path

import pooch

__all__ = ["cache_dir", "fetch"]


def cache_dir() -> Path:
    """Folder where downloads are cached.

    ``$XSPECIES_CACHE_DIR`` when set, else the operating system's cache folder (``pooch.os_cache``).

    Returns
    -------
    The folder (not created).

    Examples
    --------
    >>> cache_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/xspecies')
    """
    env = os.environ.get("XSPECIES_CACHE_DIR")
    return Path(env) if env else Path(pooch.os_cache("xspecies"))


def fetch(url: str, fname: str, known_hash: str | None = None, processor=None, progressbar: bool = True):
    """Download ``url`` once into :func:`cache_dir` with pooch and return the local path(s).

    Parameters
    ----------
    url
        Address of the file.
    fname
        File name in the cache.
    known_hash
        Expected hash (``"sha256:..."``); ``None`` skips the check (pooch then logs the file's hash).
    processor
        A pooch processor (e.g. :class:`pooch.Untar`).
    progressbar
        Show a download progress bar.

    Returns
    -------
    Path of the file, or what the processor returns.

    Examples
    --------
    >>> fetch("https://example.org/file.csv", "file.csv")  # doctest: +SKIP
    """
    return pooch.retrieve(
        url,
        known_hash=known_hash,
        fname=fname,
        path=cache_dir(),
        processor=processor,
        progressbar=progressbar,
    )
