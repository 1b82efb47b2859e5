"""IPC Gateway: standardized police-cooperation forms over SMTP, signed, encrypted and tracked."""

__version__ = "0.1.0"
