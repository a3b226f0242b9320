"""homelab-p2p-bridge: the homelab daemon (``homelab_server``) and the ``homelab-p2p`` CLI."""
