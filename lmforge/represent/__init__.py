"""The pre-transformer branch: bag-of-words vectors and word2vec embeddings."""

from lmforge.represent.bag_of_words import BagOfWords

__all__ = ["BagOfWords"]
