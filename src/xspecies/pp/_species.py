"""Species names and NCBI taxon ids."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Species", "resolve_species"]


@dataclass(frozen=True)
class Species:
    """A species: common name, NCBI taxon id and its organism name in the MGI homology report."""

    name: str
    taxon_id: int
    mgi_name: str | None = None


_KNOWN = (
    Species("human", 9606, "human"),
    Species("mouse", 10090, "mouse, laboratory"),
    Species("rat", 10116, "rat"),
    Species("zebrafish", 7955, "zebrafish"),
    Species("chimpanzee", 9598, "chimpanzee"),
    Species("macaque", 9544, "macaque, rhesus"),
    Species("dog", 9615, "dog, domestic"),
    Species("cattle", 9913, "cattle"),
    Species("chicken", 9031, "chicken"),
    Species("frog", 8364, "frog, western clawed"),
    Species("pig", 9823),
    Species("hamster", 10036),
    Species("fruitfly", 7227),
    Species("worm", 6239),
)
_ALIASES = {
    "homo sapiens": "human",
    "mus musculus": "mouse",
    "rattus norvegicus": "rat",
    "danio rerio": "zebrafish",
    "pan troglodytes": "chimpanzee",
    "rhesus": "macaque",
    "macaca mulatta": "macaque",
    "canis familiaris": "dog",
    "canis lupus familiaris": "dog",
    "bos taurus": "cattle",
    "cow": "cattle",
    "gallus gallus": "chicken",
    "xenopus tropicalis": "frog",
    "sus scrofa": "pig",
    "mesocricetus auratus": "hamster",
    "golden hamster": "hamster",
    "drosophila melanogaster": "fruitfly",
    "fly": "fruitfly",
    "caenorhabditis elegans": "worm",
}
_BY_NAME = {s.name: s for s in _KNOWN}
_BY_TAXON = {s.taxon_id: s for s in _KNOWN}


def resolve_species(species: str | int) -> Species:
    """Resolve a common name, Latin name or NCBI taxon id to a :class:`Species`.

    Parameters
    ----------
    species
        ``"human"``, ``"mouse"``, ``"Mus musculus"``, ``10090``, ``"10090"``, ... Any positive integer
        taxon id is accepted (for ``source="mygene"``), even when it has no common name here.

    Returns
    -------
    The species.

    Examples
    --------
    >>> resolve_species("mouse").taxon_id
    10090
    >>> resolve_species(9606).name
    'human'
    """
    if isinstance(species, bool):
        raise ValueError(f"invalid species {species!r}: give a common name or an NCBI taxon id.")
    if isinstance(species, int) or (isinstance(species, str) and species.strip().isdigit()):
        taxon = int(species)
        if taxon <= 0:
            raise ValueError(f"invalid NCBI taxon id {species!r}.")
        return _BY_TAXON.get(taxon, Species(f"taxon{taxon}", taxon))
    if not isinstance(species, str):
        raise ValueError(f"invalid species {species!r}: give a common name or an NCBI taxon id.")
    key = species.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _BY_NAME:
        raise ValueError(
            f"unknown species {species!r}: use one of {sorted(_BY_NAME)} or an NCBI taxon id (e.g. 10090)."
        )
    return _BY_NAME[key]
