"""The running gateway and the operations over it: serve's wiring, start-up checks, queues."""
