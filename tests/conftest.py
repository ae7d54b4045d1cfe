"""Shared fixtures. Every test runs minigpt under jaxtyping's runtime shape checker."""

from jaxtyping import install_import_hook

# Must run before anything imports minigpt: every annotated function is then checked
# (shapes and dtypes) by beartype at call time. The checker lives in minigpt_typecheck.py
# beside this file (pytest puts this folder on sys.path).
install_import_hook("minigpt", "minigpt_typecheck.checker")

import os  # noqa: E402

import pytest  # noqa: E402


def pytest_configure(config):
    """Share the cores between xdist's workers; run the chapters' kernels on a clean profile."""
    from minigpt.notebook import share_cores, use_book_kernel_profile

    # In xdist's controller, -n N; in a worker, the count xdist gives it (the same N).
    workers = (
        os.environ.get("PYTEST_XDIST_WORKER_COUNT")
        or getattr(config.option, "numprocesses", None)
        or 1
    )
    share_cores(int(workers) if str(workers).isdigit() else (os.cpu_count() or 1))
    use_book_kernel_profile()


@pytest.fixture
def one_thread():
    """Micro models gain nothing from threads, and on a busy 2-core machine they lose a lot.

    Files of micro-model tests ask for it with ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    """The tiny GPT-2 of the generation tests, ``(ours, Hugging Face's)``: tests/tiny_gpt.py."""
    from tiny_gpt import make_tiny

    return make_tiny()


@pytest.fixture(scope="session")
def reference():
    """The reference GPT-2 (loaded once for the whole test session, ~10 s on 2 cores)."""
    from minigpt.reference import load_reference

    return load_reference()


@pytest.fixture
def corpus_dir(tmp_path):
    """A folder of two text documents (small_corpus.py) and a file that is not text."""
    from small_corpus import TEXT_A, TEXT_B

    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT_A)
    (folder / "b.md").write_text(TEXT_B)
    (folder / "skip.bin").write_bytes(b"\x00\x01")
    return folder


@pytest.fixture(scope="module")
def corpus_tokenizer():
    """A 300-token BPE trained on the two documents of ``corpus_dir``."""
    from small_corpus import TEXT_A, TEXT_B

    from minigpt.tokenizer import BPETokenizer

    return BPETokenizer.train((TEXT_A + TEXT_B) * 3, 300)


@pytest.fixture
def minigpt_cache(tmp_path, monkeypatch):
    """minigpt's cache folder (``$MINIGPT_CACHE``), new and empty for this test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MINIGPT_CACHE", str(folder))
    return folder


@pytest.fixture
def hub_layout_dataset(tmp_path):
    """A local dataset in the Hugging Face hub's layout, as ``wikimedia/wikipedia`` is: two
    configurations (``de``, ``en``) of parquet shards under a README.md whose front matter
    lists them, the text in a column named ``body``. ``datasets.load_dataset(folder, "de")``
    opens it as it opens the hub's (small_corpus.write_hub_dataset)."""
    from small_corpus import write_hub_dataset

    texts = {
        "de": [f"Dies ist Artikel {i} über die Stadt Nummer {i}. " * 20 for i in range(30)],
        "en": [f"This is article {i} about town number {i}. " * 20 for i in range(30)],
    }
    return write_hub_dataset(tmp_path / "wiki-stand-in", texts), texts
