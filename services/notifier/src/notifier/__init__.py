"""Ember notifier: the email outbox, its worker, Resend webhooks and the suppression list."""
