"""The built-in dataset adapters, one module each, registered through the ``serbench``
entry points like a third-party adapter: ``emodb``, ``ravdess``, ``cremad``, ``folder``.
Each fetchable one declares its ``source`` and ships its checksum manifest in
``manifests/`` beside these modules."""
