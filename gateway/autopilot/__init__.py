"""Autopilot: sampled full generations of live traffic re-tune each domain's policy.

``samples`` keeps the generations in Redis, ``tuner`` decides (pure: replay, Wilson bound,
accept / reject / roll back), ``runner`` runs it while traffic flows and writes the decisions
through the policy store.
"""
