"""Other tools' formats, in a room of their own above the core.

The model and the tokenizer the book teaches (``config``, ``embed``, ``attention``, ``mlp``,
``layernorm``, ``block``, ``model``, ``bpe``, ``tokenizer``) import nothing from here; each
module here reads and writes one foreign format, in both directions.

* ``renumbered``: tokenizers whose ids are not the core layout's (an id map), and the tables
  that the readers below turn into that layout.
* ``vocab_merges``: GPT-2's ``vocab.json`` + ``merges.txt``.
* ``tiktoken_ranks``: tiktoken's rank files.
* ``hf_tokenizer``: Hugging Face's ``tokenizer.json`` (and ``tokenizer_config.json``).
"""
