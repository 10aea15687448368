"""The ``flashbench`` commands: the only place that wires ``flashbench`` and ``reports`` together."""
