"""Ember identity."""
