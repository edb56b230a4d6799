"""Ember storefront."""
