"""The handlers' desks: routing, the readable rendering, Maildir delivery, notices."""
