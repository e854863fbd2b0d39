"""The ledger's unit of account."""

MICROS = 1_000_000  # the ledger's precision: 6 decimal places
