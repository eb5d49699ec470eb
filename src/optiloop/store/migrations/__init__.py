"""Alembic migrations of the store's schema, run by ``Store`` when it opens.

Alembic reads this folder as its script location; the package marker is here
so that the revisions ship with the installed package.
"""
