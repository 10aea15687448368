"""Models: the portrait-model protocol, ``CaseSpec``, the registry, and one module or folder per family."""
