"""Core: settings, errors, clock, schema, redaction, policy and router, the store, audit."""
