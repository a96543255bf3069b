"""Gateway: what clients call. Orchestrates the services into audited, role-checked decisions."""
