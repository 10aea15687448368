"""Planning from a model alone: the memory planner, the sampling regime and calibration fitting."""
