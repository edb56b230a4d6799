"""A local stand-in for Stripe: Checkout Sessions, a hosted pay page, refunds, signed webhooks.

Run it with ``uvicorn --factory standins.stripe:create_app --port 8201``; point the stripe SDK
at it with ``base_addresses={"api": "http://127.0.0.1:8201"}`` and any ``sk_test_`` key.
"""

from standins.stripe.app import create_app

__all__ = ["create_app"]
