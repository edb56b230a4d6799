"""Ember notifier."""
