"""The training tests use the session fixtures of tests/conftest.py (shards, VAE, tiny run)."""
