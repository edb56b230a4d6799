"""What every Ember service shares."""
