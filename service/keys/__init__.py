"""API keys: tenants authenticate with ``Authorization: Bearer <key>``; only salted hashes are stored."""
