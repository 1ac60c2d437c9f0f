"""halocm.data."""
