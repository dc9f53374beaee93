"""The online API (FastAPI): scoring, decision reads by role, Label Studio webhooks."""
