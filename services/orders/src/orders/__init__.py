"""Ember orders."""
