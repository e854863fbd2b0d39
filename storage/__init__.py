"""dataworth storage package."""
