"""hyperrec: e-commerce recommendation from a researcher's config to a production endpoint."""

__version__ = "0.1.0"
