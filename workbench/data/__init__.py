"""Data: loading (files, folders, hub names) with `datasets`, format normalisation, collation."""
