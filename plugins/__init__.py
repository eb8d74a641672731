"""serbench's built-in plugins, registered through the ``serbench`` entry-point group
exactly like a third-party plugin package."""
