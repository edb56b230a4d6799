"""Test fixtures every service uses: real Postgres, real Redis, signed tokens, the whole stack."""
