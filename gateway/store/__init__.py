"""The durable state: ledger, audit chain, spools, durable files, schema migrations."""
