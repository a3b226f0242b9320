"""The ``homelab-p2p`` client and operations CLI: forward, pipe, fetch, echo, doctor, token."""
