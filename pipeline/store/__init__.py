"""Durable state of runs: the job store and the spend ledger."""
