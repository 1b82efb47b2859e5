"""Tracking what was exchanged: receipts, and later deadlines and their scheduler."""
