"""The decision pipeline both the flows and the API call: validate, features, score, route, store."""
