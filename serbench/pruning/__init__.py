"""Pruners: stopping unpromising trials from their epoch-level validation scores
(:mod:`.base` is the contract; the built-ins are plugins like any other)."""
