"""The model: features, training, explanation, the MLflow registry, scoring, promotion."""
