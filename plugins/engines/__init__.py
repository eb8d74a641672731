"""Built-in optimiser engines."""
