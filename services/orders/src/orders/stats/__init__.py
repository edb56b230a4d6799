"""Sales figures for the admin dashboard, computed in SQL."""
