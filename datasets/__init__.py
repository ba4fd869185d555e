"""Database adapters in their official on-disk layouts, behind a registry."""
