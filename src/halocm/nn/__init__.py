"""halocm.nn."""
