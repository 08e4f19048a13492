"""Download cache shared by the dataset loaders and the online ortholog sources."""

from __future__ import annotations

import os
from pathlib import Path

import pooch

from xspecies._docs import doc_params, doc_progressbar

__all__ = ["cache_dir", "fetch", "network_errors", "offline_error"]


def cache_dir() -> Path:
    """Folder where downloads are cached.

    ``$XSPECIES_CACHE_DIR`` when set, else the operating system's cache folder (``pooch.os_cache``).

    Returns
    -------
    The folder (not created).

    Examples
    --------
    >>> import os
    >>> os.environ["XSPECIES_CACHE_DIR"] = "/scratch/xspecies-cache"
    >>> str(cache_dir())
    '/scratch/xspecies-cache'
    """
    env = os.environ.get("XSPECIES_CACHE_DIR")
    return Path(env) if env else Path(pooch.os_cache("xspecies"))


def network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean a server could not be reached (no connection, DNS failure, timeout).

    Returns
    -------
    tuple of exception types
        The built-in ones and those of ``requests`` (pooch) and ``httpx`` (mygene) when installed.

    Examples
    --------
    >>> ConnectionError in network_errors()
    True
    """
    import socket
    import urllib.error

    errors: list[type[BaseException]] = [
        ConnectionError,
        TimeoutError,
        socket.gaierror,
        urllib.error.URLError,
    ]
    try:
        import requests

        errors += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    except ImportError:  # pragma: no cover - pooch installs requests
        pass
    try:
        import httpx

        errors.append(httpx.TransportError)
    except ImportError:
        pass
    return tuple(errors)


def offline_error(
    what: str, url: str, alternative: str, cause: BaseException, cached: bool = True
) -> ConnectionError:
    """The one-line error of a network-only source that could not be reached.

    Parameters
    ----------
    what
        The source (``"the MGI homology report"``).
    url
        Its address.
    alternative
        What works offline (the embedded data).
    cause
        The original error (its type is named).
    cached
        Whether the source is cached once downloaded (then the message names the cache folder).

    Returns
    -------
    ConnectionError
        To be raised ``from None``.

    Examples
    --------
    >>> err = offline_error("the liver data", "https://zenodo.org", "xs.datasets.pancreas()", OSError())
    >>> str(err).startswith("the liver data needs an internet connection")
    True
    """
    host = url.split("/")[2] if "://" in url else url
    cache = f"; downloads are cached in {cache_dir()}" if cached else ""
    return ConnectionError(
        f"{what} needs an internet connection ({host} could not be reached: {type(cause).__name__}"
        f"{cache}). Offline, use {alternative}."
    )


@doc_params(progressbar=doc_progressbar)
def fetch(
    url: str,
    fname: str,
    known_hash: str | None = None,
    processor=None,
    progressbar: bool = True,
    what: str = "this dataset",
    alternative: str = "the embedded demo data, xs.datasets.pancreas()",
):
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
    {progressbar}
    what, alternative
        The source and what works offline, for the error raised when the server cannot be reached.

    Returns
    -------
    Path of the file, or what the processor returns.

    Raises
    ------
    ConnectionError
        One line naming the source and the offline alternative when the server cannot be reached
        and the file is not cached.

    Examples
    --------
    A file already in the cache is returned without a download; a server that cannot be reached raises
    one line (here nothing listens on port 9 of the local host):

    >>> import os
    >>> os.environ["XSPECIES_CACHE_DIR"] = "downloads"
    >>> cache_dir().mkdir()
    >>> _ = (cache_dir() / "table.csv").write_text("gene,count")
    >>> fetch("https://example.org/table.csv", "table.csv")
    '.../downloads/table.csv'
    >>> fetch("http://127.0.0.1:9/other.csv", "other.csv", progressbar=False, what="the other table")
    Traceback (most recent call last):
    ...
    ConnectionError: the other table needs an internet connection (127.0.0.1:9 could not be reached: ...
    """
    try:
        return pooch.retrieve(
            url,
            known_hash=known_hash,
            fname=fname,
            path=cache_dir(),
            processor=processor,
            progressbar=progressbar,
        )
    except network_errors() as exc:
        raise offline_error(what, url, alternative, exc) from None
