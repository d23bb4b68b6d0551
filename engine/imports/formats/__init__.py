"""One module per source layout; each defines ``plan(content, request) -> Plan`` and ``DESCRIPTION``."""
