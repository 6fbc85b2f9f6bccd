"""Job modules used by the tasklet tests (read as source text, never imported)."""
