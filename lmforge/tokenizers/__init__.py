"""Subword tokenizers: byte-level BPE (GPT-2/GPT-4 style) and WordPiece (BERT), one ``Tokenizer`` interface,
trainers, SentencePiece-style models read from files (character-level BPE with byte fallback, Unigram), and the
ecosystem's file formats (HF ``tokenizer.json``, GPT-2 ``vocab.json``/``merges.txt``, BERT
``vocab.txt``, tiktoken ranks). Imports no torch.
"""

from lmforge.tokenizers.bpe import CL100K_PATTERN, GPT2_PATTERN, bytes_to_unicode
from lmforge.tokenizers.tokenizer import Tokenizer, load_tokenizer
from lmforge.tokenizers.train import train_tokenizer

__all__ = ["CL100K_PATTERN", "GPT2_PATTERN", "Tokenizer", "bytes_to_unicode", "load_tokenizer", "train_tokenizer"]
