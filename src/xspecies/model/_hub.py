"""Write xspecies models as scvi-tools hub folders (loadable with :class:`scvi.hub.HubModel`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

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
from scvi.hub import HubModel

hub = HubModel("{folder}")
hub.load_model()  # hub.model is an xspecies.model.{cls_name}
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
    because :class:`scvi.hub.HubModelCardHelper` only knows scvi-tools' own classes. Load it with
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
    >>> xs.model.save_to_hub_dir(target, "human_pancreas_target")
    >>> from scvi.hub import HubModel
    >>> target = HubModel("human_pancreas_target").load_model()
    """
    from scvi.hub import HubMetadata
    from scvi.hub._constants import _SCVI_HUB

    model._check_if_trained(warn=False)
    if not model.is_trained:
        raise ValueError("Train the model before saving it to a hub folder.")
    path = Path(dir_path)
    model.save(str(path), overwrite=overwrite, save_anndata=save_anndata)
    cls_name = type(model).__name__
    metadata = HubMetadata(
        scvi_version=version("scvi-tools"),
        anndata_version=version("anndata"),
        model_cls_name=cls_name,
        model_parent_module="xspecies.model",
    )
    (path / _SCVI_HUB.METADATA_FILE_NAME).write_text(json.dumps(asdict(metadata), indent=4))
    labels = model.registry_["setup_args"].get("labels_key")
    card = _CARD.format(
        license=license_info,
        cls_name=cls_name,
        scvi_version=metadata.scvi_version,
        anndata_version=metadata.anndata_version,
        annotated=labels is not None,
        package="xspecies",
        package_version=version("xspecies"),
        description=description or f"A xspecies {cls_name}.",
        folder=path.name,
        n_genes=model.summary_stats.n_vars,
        n_cells=model.summary_stats.n_cells,
        n_latent=model.module.n_latent,
        init_params=model.init_params_["non_kwargs"],
    )
    (path / _SCVI_HUB.MODEL_CARD_FILE_NAME).write_text(card)
    return path
