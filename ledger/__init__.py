"""dataworth ledger package."""
