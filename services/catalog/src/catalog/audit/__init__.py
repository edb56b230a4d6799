"""The catalog's audit trail: written by every admin write (``recorder``), read by admins."""
