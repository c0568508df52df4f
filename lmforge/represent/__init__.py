"""The pre-transformer branch: bag-of-words vectors and word2vec embeddings."""

from lmforge.represent.bag_of_words import BagOfWords
from lmforge.represent.keyed_vectors import KeyedVectors, load_vectors, save_vectors
from lmforge.represent.word2vec import Word2Vec

__all__ = ["BagOfWords", "KeyedVectors", "Word2Vec", "load_vectors", "save_vectors"]
