"""Runtime helpers every long-running process shares: logging, sd_notify, stopping on a
signal, owned task sets, rate limits. Built on the protocol core only.
"""
