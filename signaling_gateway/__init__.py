"""The local API-Gateway-compatible WebSocket gateway (``signaling-gateway``).

It runs the Lambda handler of this package in-process and behaves towards clients and
towards the handler the way API Gateway does, so a homelab without an AWS account gets the
same signaling, and tests exercise the handler's real code paths.
"""
