"""Shopping carts: guest and signed-in, their lines, and the merge at sign-in."""
