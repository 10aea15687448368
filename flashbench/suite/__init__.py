"""The suite language: the schema's machinery, cases, settings, the metric catalog and the suite document."""
