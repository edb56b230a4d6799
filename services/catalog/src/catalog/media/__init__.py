"""Product images: validation and re-encoding, and the stores they are kept in."""
