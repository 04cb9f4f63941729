"""Dagster assets, one module per stage; each is thin: read, call `utfall`, write, describe."""
