"""The handlers' console over HTTP (`gateway web`): Starlette, Jinja2, uvicorn, its own process."""
