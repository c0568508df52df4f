"""Text sources (the built-in corpus, the user's files) and token files for training."""
