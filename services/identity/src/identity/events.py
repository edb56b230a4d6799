"""What identity publishes (through its outbox, in the transaction of the change).

``user.registered`` when an account is made (a finished sign-up or a first Google sign-in);
``sign_up.requested`` / ``sign_up.existing_account`` when someone asks to sign up (the notifier
mails the link, or tells the owner of an existing account); ``password_reset.requested``; and
``password.changed``. Identity handles no domain events.
"""

from __future__ import annotations

from ember_shared.events import EventData, Outbox
from ember_shared.events.contracts import (
    PasswordChanged,
    PasswordResetRequested,
    SignUpForExistingAccount,
    SignUpRequested,
    UserRegistered,
)

from identity.models import Base

#: Every event type identity publishes (each names ``PRODUCER = "identity"``).
PUBLISHES: tuple[type[EventData], ...] = (
    UserRegistered,
    SignUpRequested,
    SignUpForExistingAccount,
    PasswordResetRequested,
    PasswordChanged,
)

outbox = Outbox("identity", Base.metadata)
