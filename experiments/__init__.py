"""Experiment definitions (YAML) and the intra/inter-database table writers."""
