"""Switchboard bench: load through the real system (bench/README.md). Run ``python -m bench``."""
