"""Search across what was exchanged: entity folding, the index written at acceptance, matching."""
