"""The HTTP API under /api/v1 for systems that integrate with the gateway (a national
case-management system): API keys, JSON, the console's authorisation rules and access log."""
