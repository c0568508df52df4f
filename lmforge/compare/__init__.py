"""Measured comparisons: text classification by every representation, language models of every generation."""
