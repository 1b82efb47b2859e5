"""The bottom layer: configuration, clock, durations, errors with their SMTP replies, limits."""
