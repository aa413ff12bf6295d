"""Registered video models, one module per paper notebook (exported by nbdev)."""
