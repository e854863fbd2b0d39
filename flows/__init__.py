"""dataworth flows package."""
