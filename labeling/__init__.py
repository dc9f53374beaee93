"""Label Studio: the adapter (server, projects, tasks, sync) and the review domain (`review`)."""
