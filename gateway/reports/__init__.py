"""Statistics reports over a period: figures from the ledger, rendered as HTML, PDF, CSV or JSON."""
