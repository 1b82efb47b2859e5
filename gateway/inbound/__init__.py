"""The inbound flow: the SMTP server and the pipeline that runs inside DATA."""
