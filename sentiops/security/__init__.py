"""Who may write, and how fast anyone may call: shared by the predictor, the drift sidecar, the
feedback API and the local stack.

    auth        bearer tokens for the write paths, from token files; each token has a name
                (what labels record), checked in constant time, never logged in full
    ratelimit   a token bucket per client (429 with Retry-After)

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
