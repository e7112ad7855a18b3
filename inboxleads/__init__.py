"""Bulk-load leads into Inbox campaigns through the Add leads API."""

__version__ = "0.1.0"
