"""Command-line interface of xspecies (``xspecies --help``)."""
