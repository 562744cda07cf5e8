"""Mapping files: schema, loader, pure engine, named transforms."""
