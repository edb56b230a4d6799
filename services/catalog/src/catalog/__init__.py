"""Ember catalog."""
