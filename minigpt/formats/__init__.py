"""Other tools' formats, in a room of their own above the core.

The model and the tokenizer the book teaches (``config``, ``embed``, ``attention``, ``mlp``,
``layernorm``, ``block``, ``model``, ``bpe``, ``tokenizer``) import nothing from here; each
module here reads and writes one foreign format, in both directions.
"""
