"""dataworth valuation package."""
