"""homelab-p2p-bridge: the homelab daemon (``homelab_server``)."""
