"""Warehouse: settings, connection (embedded or external PostgreSQL), schema, migrations, numbers."""
