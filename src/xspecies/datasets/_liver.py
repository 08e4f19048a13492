"""The liver datasets of the scSpecies paper (Zenodo record 15522251)."""

from __future__ import annotations

import anndata as ad

from xspecies._docs import doc_params, doc_progressbar

from ._fetch import fetch

__all__ = ["liver"]

ZENODO_RECORD = "15522251"
LIVER_FILES = {
    "human": "human_liver.h5ad",
    "mouse": "mouse_liver.h5ad",
    "hamster": "hamster_liver.h5ad",
}
#: sha256 of the files; unknown when registered, so pooch skips the check and logs the hash it sees
LIVER_HASHES: dict[str, str | None] = dict.fromkeys(LIVER_FILES)


def liver_url(species: str) -> str:
    """Zenodo address of the liver file of ``species``.

    Parameters
    ----------
    species
        ``"human"``, ``"mouse"`` or ``"hamster"``.

    Returns
    -------
    The URL.

    Examples
    --------
    >>> liver_url("mouse")
    'https://zenodo.org/records/15522251/files/mouse_liver.h5ad?download=1'
    """
    if species not in LIVER_FILES:
        raise ValueError(f"unknown species {species!r} for the liver data: use one of {sorted(LIVER_FILES)}.")
    return f"https://zenodo.org/records/{ZENODO_RECORD}/files/{LIVER_FILES[species]}?download=1"


@doc_params(progressbar=doc_progressbar)
def liver(species: str = "mouse", progressbar: bool = True) -> ad.AnnData:
    """Liver scRNA-seq of the scSpecies paper (human, mouse, hamster), downloaded once from Zenodo.

    The files are cached by pooch (see :func:`xspecies.datasets.cache_dir`). Their hashes are not
    registered yet (``None``), so the download is not verified. Without a connection (and no cached
    file) a :class:`ConnectionError` names the embedded pancreas demo data as the offline alternative.

    Parameters
    ----------
    species
        ``"human"``, ``"mouse"`` or ``"hamster"``.
    {progressbar}

    Returns
    -------
    The AnnData of the file, as published.

    Examples
    --------
    The example downloads the file from Zenodo, so the offline test suite does not run it.

    >>> import xspecies as xs
    >>> hamster = xs.datasets.liver("hamster")  # doctest: +SKIP
    """
    url = liver_url(species)
    path = fetch(
        url,
        LIVER_FILES[species],
        known_hash=LIVER_HASHES[species],
        progressbar=progressbar,
        what=f"the {species} liver data (Zenodo)",
        alternative="the embedded pancreas demo data, xs.datasets.pancreas('human' or 'mouse')",
    )
    return ad.read_h5ad(path)
