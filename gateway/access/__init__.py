"""Who may use the console and the API, and what each may see: users, roles, passwords, the second
factor, sessions, API keys and the access log."""
