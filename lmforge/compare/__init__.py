"""Side-by-side comparisons of models trained on the same data with the same budget."""
