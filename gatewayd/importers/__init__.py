"""Imports from other schedulers: each reads their store into a plan, which the API applies."""
