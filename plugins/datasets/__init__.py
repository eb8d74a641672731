"""Built-in dataset adapters."""
