"""A suite run: suite -> plan -> sample -> measure -> pool -> rows in a run directory."""
