"""Two short texts that the corpus and data tests read as a folder of documents; the
``corpus_dir`` and ``small_tokenizer`` fixtures (conftest.py) are built from them."""

TEXT_A = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
TEXT_B = "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n"
