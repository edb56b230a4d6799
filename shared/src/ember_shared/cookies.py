"""The cookies the services share with one browser: one name each, whoever sets or reads it.

Identity sets the sign-in pair and cart the guest cart; checkout and the storefront read them
(all behind one origin, through Caddy), so a name changed in one place only would sign shoppers
out or lose their carts without any test of one service noticing.
"""

from __future__ import annotations

#: The short-lived access token (a JWT), set by identity on sign-in and refresh.
ACCESS_COOKIE = "ember_access"
#: The sign-in session (the refresh token), set by identity, sent only to its routes.
SESSION_COOKIE = "ember_session"
#: The signed guest cart id, set by cart.
CART_COOKIE = "ember_cart"
#: The sign-in session's CSRF token, readable by the page (:mod:`ember_shared.csrf`).
CSRF_COOKIE = "ember_csrf"
