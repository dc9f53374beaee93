"""Drift (Evidently), override and SLA metrics, alert rules, the QA report."""
