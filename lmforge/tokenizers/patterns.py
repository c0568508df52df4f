"""The pre-tokenizer regexes of GPT-2 and GPT-4 (cl100k), by name (the compiled splitters in ``fast`` know
them too)."""

# GPT-2's pre-tokenizer: contractions, letter runs, number runs, punctuation runs (each with one optional
# leading space), then whitespace. The lookahead keeps the last space of a run for the next word.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's (cl100k_base): case-insensitive contractions, numbers in groups of at most 3, newlines apart.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s+"""
)
