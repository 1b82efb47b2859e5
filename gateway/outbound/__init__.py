"""Outbound: handlers' forms into the queue, and their delivery to partners."""
