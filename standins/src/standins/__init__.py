"""Ember standins."""
