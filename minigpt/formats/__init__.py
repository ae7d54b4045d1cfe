"""Other tools' formats, in a room of their own above the core.

The model and the tokenizer the book teaches (``config``, ``embed``, ``attention``, ``mlp``,
``layernorm``, ``block``, ``model``, ``bpe``, ``tokenizer``) import nothing from here; each
module here reads and writes one foreign format, in both directions:

* ``gpt2_weights``: GPT-2's settings and weights between Hugging Face's names and layouts
  and ours (TransformerLens's), one table read both ways; copying TransformerLens-named
  weights into a model or one of its modules.
* ``hf_model``: Hugging Face's ``GPT2LMHeadModel`` in memory (``from_hf``), TransformerLens's
  bridge (``from_bridge``), the Hugging Face hub and cache, and model folders
  (``save_pretrained``, ``from_pretrained``), their weights checked against a digest.
* ``renumbered``: tokenizers whose ids are not the core layout's (an id map), and the tables
  that the readers below turn into that layout.
* ``vocab_merges``: GPT-2's ``vocab.json`` + ``merges.txt``.
* ``tiktoken_ranks``: tiktoken's rank files.
* ``hf_tokenizer``: Hugging Face's ``tokenizer.json`` (and ``tokenizer_config.json``).
"""
