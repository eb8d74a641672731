"""The built-in dataset adapters, one module each, registered through the ``serbench``
entry points like a third-party adapter: ``emodb``, ``ravdess``, ``cremad``, ``folder``."""
