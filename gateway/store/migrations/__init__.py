"""The ledger's schema migrations (Alembic): env.py, the template, and one file per revision."""
