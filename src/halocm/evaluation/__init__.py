"""halocm.evaluation."""
