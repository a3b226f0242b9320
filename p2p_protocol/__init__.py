"""The protocol core: names, tokens, signaling envelopes and error codes, WebRTC signals,
HTTP framing over a data channel, ICE server URLs. Standard library only, and no I/O: every
other package builds on it, and the Lambda zip carries it beside ``signaling_lambda``.
"""
