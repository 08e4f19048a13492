"""Cross-species models on scvi-tools: :class:`ContextModel` and :class:`TargetModel`."""
