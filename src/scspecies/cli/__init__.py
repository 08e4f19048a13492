"""Command-line interface of scspecies (``scspecies --help``)."""
