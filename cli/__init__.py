"""The `fraudloop` command: one Typer app on top of every layer, grouped by who uses it."""
