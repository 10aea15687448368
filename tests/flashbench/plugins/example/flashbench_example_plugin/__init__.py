"""An example FlashBench plugin: each module holds the object one entry point names (docs/plugins.md)."""
