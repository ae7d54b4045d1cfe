"""Two short texts that the corpus and data tests read as a folder of documents; the
``corpus_dir`` and ``small_tokenizer`` fixtures (conftest.py) are built from them. And
:func:`write_hub_dataset`, a local dataset in the Hugging Face hub's layout, of any size (the
``hub_layout_dataset`` fixture, the shard tests and ``benchmarks/bench_tokenize.py``)."""

from pathlib import Path

TEXT_A = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
TEXT_B = "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n"


def write_hub_dataset(
    folder: Path, texts: dict[str, list[str]], shards: int = 2, column: str = "body"
) -> Path:
    """``folder`` as the hub lays out ``wikimedia/wikipedia``: a configuration per key of
    ``texts`` (its documents in ``column``, in ``shards`` parquet files) under a
    README.md whose front matter lists them. ``datasets.load_dataset(folder, config)`` opens
    it as it opens the hub's; row ``i`` of a configuration is in shard ``i % shards``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = ["---", "configs:"]
    for name, docs in texts.items():
        (folder / name).mkdir(parents=True)
        for shard in range(shards):
            part = docs[shard::shards]
            table = pa.table({"id": list(range(len(part))), column: part})
            pq.write_table(table, folder / name / f"train-{shard:05d}-of-{shards:05d}.parquet")
        lines += [f"- config_name: {name}", "  data_files:", "  - split: train",
                  f"    path: {name}/*.parquet"]  # fmt: skip
    (folder / "README.md").write_text("\n".join([*lines, "---", "A stand-in.", ""]))
    return folder


def articles(n: int, language: str = "de", seed: int = 0) -> list[str]:
    """``n`` made-up articles of varied length (a few hundred to a few thousand characters)."""
    import random

    rng = random.Random(seed)
    words = {
        "de": "die Stadt liegt am Fluss und hat viele alte Häuser Kirche Markt Brücke".split(),
        "en": "the town lies on a river and has many old houses church market bridge".split(),
    }[language]
    return [
        f"Artikel {i}. " + " ".join(rng.choice(words) for _ in range(rng.randint(40, 600))) + "\n"
        for i in range(n)
    ]
