"""The sandbox stand-in of the Inbox API; see `inboxleads.sandbox.server` for its rules."""

from .server import (
    API_PREFIX,
    DEFAULT_TOKEN,
    HANG_S,
    Faults,
    RunningSandbox,
    SandboxConfig,
    SandboxState,
    create_app,
    sandbox_transport,
    serve,
)

__all__ = [
    "API_PREFIX",
    "DEFAULT_TOKEN",
    "HANG_S",
    "Faults",
    "RunningSandbox",
    "SandboxConfig",
    "SandboxState",
    "create_app",
    "sandbox_transport",
    "serve",
]
