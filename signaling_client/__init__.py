"""The asyncio client side of the signaling service's WebSocket protocol."""
