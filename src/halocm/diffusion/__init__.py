"""halocm.diffusion."""
