"""Alembic migrations of the BreachWatch database (applied by ``incidents.migrate.upgrade``)."""
