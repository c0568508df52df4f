"""Measured comparisons on the same data and budget: text classification by every representation, language models
of every generation, and the translation architectures."""
