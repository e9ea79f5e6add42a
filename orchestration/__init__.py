"""Dagster Definitions (jobs, schedules, sensors, resources), the close runner and the `coinfrs` CLI."""
