"""The demo catalog: its data and images (see catalog.seed)."""
