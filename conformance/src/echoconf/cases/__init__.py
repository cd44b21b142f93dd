"""The conformance cases, one test module per family (see conformance/README.md)."""
