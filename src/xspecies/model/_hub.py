"""Write xspecies models as scvi-tools hub folders (loadable with :class:`scvi.hub.HubModel`)."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from xspecies._io import atomic_dir

#: File names of a scvi-tools hub folder (the metadata :class:`scvi.hub.HubModel` reads, the card).
METADATA_FILE = "_scvi_required_metadata.json"
CARD_FILE = "README.md"

_CARD = """---
library_name: scvi-tools
license: {license}
tags:
- biology
- genomics
- single-cell
- model_cls_name:{cls_name}
- scvi_version:{scvi_version}
- anndata_version:{anndata_version}
- modality:rna
- annotated:{annotated}
---

# {cls_name} ({package} {package_version})

{description}

Cross-species model of the `xspecies` package, built on scvi-tools. Load it offline with

```python
{load_code}
```

- genes: {n_genes}; cells: {n_cells}; latent dimensions: {n_latent}
- model arguments: `{init_params}`
"""


def save_to_hub_dir(
    model,
    dir_path: str | Path,
    description: str = "",
    license_info: str = "cc-by-4.0",
    save_anndata: bool = True,
    overwrite: bool = False,
) -> Path:
    """Save an xspecies model as a scvi-tools hub folder (model, data, metadata and model card).

    :class:`scvi.hub.HubModel` finds the model class from the metadata file
    (``model_cls_name`` and ``model_parent_module="xspecies.model"``); the model card is written here
    because :class:`scvi.hub.HubModelCardHelper` only knows scvi-tools' own classes. The folder is
    built beside ``dir_path`` and swapped in when complete, so an interrupted save leaves a previous
    folder intact. A folder saved without its data loads with :func:`load_hub_dir` and the data. Load it with
    ``scvi.hub.HubModel(dir_path).load_model()`` (offline) or push it with
    :meth:`scvi.hub.HubModel.push_to_huggingface_hub`.

    Parameters
    ----------
    model
        A trained :class:`~xspecies.model.ContextModel` or :class:`~xspecies.model.TargetModel`.
    dir_path
        Folder to write.
    description
        Free text for the model card.
    license_info
        License identifier in the model card.
    save_anndata
        Save the training AnnData with the model (needed to load it without passing data).
    overwrite
        Overwrite an existing folder.

    Returns
    -------
    pathlib.Path
        The folder.

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()
    >>> hub_dir = xs.model.save_to_hub_dir(target, "human_pancreas_target")
    >>> sorted(p.name for p in hub_dir.iterdir())
    ['README.md', '_scvi_required_metadata.json', 'adata.h5ad', 'model.pt']
    >>> from scvi.hub import HubModel
    >>> hub = HubModel(str(hub_dir))
    >>> hub.load_model()
    >>> type(hub.model).__name__
    'TargetModel'
    """
    from scvi.hub import HubMetadata

    model._check_if_trained(warn=False)
    if not model.is_trained:
        raise ValueError("Train the model before saving it to a hub folder.")
    path = Path(dir_path)
    cls_name = type(model).__name__
    labels = model.registry_["setup_args"].get("labels_key")
    if save_anndata:
        load_code = f'from scvi.hub import HubModel\n\nhub = HubModel("{path.name}")\nhub.load_model()  # hub.model is an xspecies.model.{cls_name}'
    else:
        load_code = (
            "import xspecies as xs\n\n# saved without its data: pass the AnnData it was trained on\n"
            f'model = xs.model.load_hub_dir("{path.name}", adata=adata)'
        )
    init = model.init_params_
    init_params = {
        **init["non_kwargs"],
        **{k: v for group in init["kwargs"].values() for k, v in group.items()},
    }
    card = _CARD.format(
        license=license_info,
        cls_name=cls_name,
        scvi_version=model.registry_["scvi_version"],
        anndata_version=version("anndata"),
        annotated=labels is not None,
        package="xspecies",
        package_version=version("xspecies"),
        description=description or f"A xspecies {cls_name}.",
        load_code=load_code,
        n_genes=model.summary_stats.n_vars,
        n_cells=model.summary_stats.n_cells,
        n_latent=model.module.n_latent,
        init_params=init_params,
    )
    owned = {"model.pt", "adata.h5ad", METADATA_FILE, CARD_FILE}
    with atomic_dir(path, overwrite=overwrite, keep=lambda name: name not in owned) as tmp:
        model.save(str(tmp), overwrite=True, save_anndata=save_anndata)
        # scvi-tools version and model class from the saved registry, as HubModel expects them
        metadata = HubMetadata.from_dir(
            str(tmp), anndata_version=version("anndata"), model_parent_module="xspecies.model"
        )
        metadata.save(str(tmp / METADATA_FILE), overwrite=True)
        (tmp / CARD_FILE).write_text(card)
    return path


def load_hub_dir(dir_path: str | Path, adata=None, **kwargs):
    """Load the model of a hub folder written by :func:`save_to_hub_dir`, with clear errors.

    Equivalent to ``scvi.hub.HubModel(dir_path).load_model(adata)``, but a missing folder or a folder
    saved without its data (``save_anndata=False``) and no ``adata`` raise a
    :class:`FileNotFoundError` that says what to do (scvi-tools would try to download the training data).

    Parameters
    ----------
    dir_path
        The hub folder.
    adata
        The data the model was trained on (same genes, same order); default: the data saved in the folder.
    **kwargs
        Passed to :meth:`scvi.hub.HubModel.load_model` (``accelerator``, ``device``).

    Returns
    -------
    The loaded :class:`~xspecies.model.ContextModel` or :class:`~xspecies.model.TargetModel`.

    Examples
    --------
    Tiny models trained on the pancreas demo (:func:`xspecies.datasets.pancreas_models`, one epoch):

    >>> import xspecies as xs
    >>> context, target = xs.datasets.pancreas_models()
    >>> human = target.adata
    >>> _ = xs.model.save_to_hub_dir(target, "human_pancreas_target")
    >>> target = xs.model.load_hub_dir("human_pancreas_target")

    A folder saved without its data loads with the data the model was trained on:

    >>> _ = xs.model.save_to_hub_dir(target, "human_pancreas_target_nodata", save_anndata=False)
    >>> target = xs.model.load_hub_dir("human_pancreas_target_nodata", adata=human)
    >>> target.adata.n_obs
    300
    """
    from scvi.hub import HubModel

    path = Path(dir_path)
    if not (path / METADATA_FILE).is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a hub folder: {METADATA_FILE} is missing "
            "(write one with xspecies.model.save_to_hub_dir)."
        )
    if adata is None and not (path / "adata.h5ad").is_file():
        raise FileNotFoundError(
            f"the hub folder {str(path)!r} was saved without its data (save_anndata=False): pass the data "
            "the model was trained on, load_hub_dir(dir_path, adata=...)."
        )
    hub = HubModel(str(path))
    hub.load_model(adata=adata, **kwargs)
    return hub.model
