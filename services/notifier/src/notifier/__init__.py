"""Ember notifier: the email outbox, its worker, Resend webhooks and the suppression list."""

#: The worker process the devstack starts beside the API (``python -m notifier.worker``).
WORKER_ENTRYPOINT = "notifier.worker:main"
