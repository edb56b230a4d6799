"""Routes other Ember services call (never routed by Caddy)."""
