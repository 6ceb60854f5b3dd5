"""Event contract, catalog, dataset sources, sequences and splits, offline store."""
