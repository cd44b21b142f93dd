"""echoconf: a conformance kit for TCP echo servers (RFC 862)."""

__version__ = "0.1.0"
