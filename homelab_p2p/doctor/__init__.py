"""``homelab-p2p doctor``: the troubleshooting guide's checks, run in order, each naming
the guide's row (cause and solution) when it fails."""
