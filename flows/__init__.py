"""Prefect flows and deployments: wiring only, each task calls a plain function below."""
