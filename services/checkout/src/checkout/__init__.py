"""Ember checkout."""
