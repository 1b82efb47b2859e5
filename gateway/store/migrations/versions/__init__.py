"""One module per schema revision of the ledger, oldest first: 0001 is the schema at adoption."""
