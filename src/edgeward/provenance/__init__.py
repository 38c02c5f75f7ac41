"""Provenance: digests, in-toto statements, DSSE envelopes, keys, trust stores, verification.

Every artifact edgeward produces gets a signed statement; every consumer (device agent, fleet
manager, bundle import) verifies it offline through one API.

Not implemented yet (a later issue). May import :mod:`edgeward.errors` only.
"""

__all__: list[str] = []
