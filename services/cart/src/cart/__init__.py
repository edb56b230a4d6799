"""Ember cart."""
