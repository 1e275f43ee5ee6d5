"""The `text` data source: Keras TextVectorization's tokenisation and vocabulary (training split only), recorded in
the run's preprocessing.json as the kinds `text` and `text_length`, and applied by eval, `tfn run --feed`,
`tfn predict --text` and the API.

Tokenisation is checked against hand-computed vectors and against Keras's
TextVectorization after `adapt` (tests/tf_reference/text_vectorization.json,
made by make_text_vectorization.py with TensorFlow).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tfn.runners.data_sources import DATASETS, load_source
from tfn.runners.preprocessing import FILE, Preprocessing, PreprocessingError, TextIds, TextLength, text_vocabulary
from tfn.specs.schema import TextData

REFERENCE = Path(__file__).parent / "tf_reference" / "text_vectorization.json"


def ids_step(vocabulary=(), **settings) -> TextIds:
    return TextIds(column="text", vocabulary=list(vocabulary), **{"max_length": 6, **settings})


# --- tokenisation and vocabulary --------------------------------------------------------


@pytest.mark.parametrize(
    "settings, text, tokens",
    [
        ({}, "The cat's HAT, (on) the-mat!", ["the", "cats", "hat", "on", "themat"]),
        ({"standardize": "lower"}, "The cat's HAT!", ["the", "cat's", "hat!"]),
        ({"standardize": "strip_punctuation"}, "The cat's HAT!", ["The", "cats", "HAT"]),
        ({"standardize": "none"}, " The\tcat's\n HAT! ", ["The", "cat's", "HAT!"]),
        ({}, "Über CAFÉ a\u00a0b", ["Über", "cafÉ", "a\u00a0b"]),  # ASCII lower-casing, ASCII whitespace: as tf.strings
        ({"tokenize": "character"}, "Ab c!", ["a", "b", " ", "c"]),
        ({"tokenize": "regex", "separator": "[,;]+", "standardize": "none"}, "a,b;;c d,", ["a", "b", "c d"]),
        ({}, "?! ...", []),
    ],
)
def test_tokens_by_hand(settings, text, tokens):
    assert TextLength(column="text", max_length=4, **settings).tokens(text) == tokens


def test_ids_pad_truncate_and_mark_unknown_tokens():
    step = ids_step(["good", "not", "bad"], max_length=4)
    ids = step.encode(["Not GOOD, really!", "", "bad bad bad good not zzz"])
    np.testing.assert_array_equal(ids, [[3, 2, 1, 0], [0, 0, 0, 0], [4, 4, 4, 2]])
    assert ids.dtype == np.int64
    lengths = TextLength(column="text", max_length=4).encode(["Not GOOD, really!", "", "bad bad bad good not zzz"])
    np.testing.assert_array_equal(lengths, [3, 0, 4])  # a cut text counts max_length tokens
    assert lengths.dtype == np.int64


def test_vocabulary_order_counts_then_reverse_bytes_and_limits():
    texts = ["b a c", "a b d", "e e [UNK]", "ä a"]
    tokenizer = TextLength(column="text", max_length=3, standardize="none")
    # counts: a 3, b 2, e 2, then c, d, ä once each; ties by UTF-8 bytes in reverse (Keras), its own OOV token never learnt
    assert text_vocabulary(tokenizer, texts) == ["a", "e", "b", "ä", "d", "c"]
    assert text_vocabulary(tokenizer, texts, max_tokens=5) == ["a", "e", "b"]  # padding and OOV count
    assert text_vocabulary(tokenizer, texts, min_count=2) == ["a", "e", "b"]
    assert text_vocabulary(tokenizer, texts, max_tokens=3, min_count=3) == ["a"]


def test_keras_text_vectorization_parity():
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    assert re.fullmatch(r"2\.\d+\.\d+", reference["tensorflow"]), "the fixture records the TensorFlow version"
    assert len(reference["cases"]) >= 7
    for name, case in reference["cases"].items():
        arguments = case["arguments"]
        settings = {
            "column": "text",
            "standardize": arguments.get("standardize", "lower_and_strip_punctuation") or "none",
            "tokenize": arguments.get("split", "whitespace"),
            "max_length": arguments["output_sequence_length"],
        }
        vocabulary = text_vocabulary(TextLength(**settings), reference["train"], arguments.get("max_tokens"))
        assert ["", "[UNK]", *vocabulary] == case["vocabulary"], name
        np.testing.assert_array_equal(TextIds(**settings, vocabulary=vocabulary).encode(reference["queries"]), case["ids"], err_msg=name)


def test_a_record_refuses_a_bad_text_step(tmp_path):
    def read(step: dict):
        (tmp_path / FILE).write_text(json.dumps({"format": "tfn.preprocessing", "version": 1, "fields": {"tokens": [step]}}))
        return Preprocessing.read(tmp_path / FILE)

    good = {"kind": "text", "column": "text", "max_length": 4, "vocabulary": ["a", "b"]}
    assert read(good).fields["tokens"][0].encode(["b z"]).tolist() == [[3, 1, 0, 0]]
    with pytest.raises(PreprocessingError, match=r"fields.tokens\[0\] \(text\): the vocabulary holds 'a' twice"):
        read({**good, "vocabulary": ["a", "a"]})
    with pytest.raises(PreprocessingError, match=r"the vocabulary holds '\[UNK\]' \(a reserved token"):
        read({**good, "vocabulary": ["[UNK]"]})
    with pytest.raises(PreprocessingError, match=r"separator '\(' is not a regular expression"):
        read({**good, "tokenize": "regex", "separator": "("})
    with pytest.raises(PreprocessingError, match=r"unknown preprocessing kind 'text_lenght' \(did you mean 'text_length'\?\)"):
        read({"kind": "text_lenght", "column": "text", "max_length": 4})


# --- the source ---------------------------------------------------------------------------


def write_table(path: Path, rows: list[tuple[str, str]], form: str = "csv") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        if form == "jsonl":
            f.writelines(json.dumps({"label": label, "text": text}) + "\n" for text, label in rows)
        else:
            writer = csv.writer(f, delimiter="\t" if form == "tsv" else ",", lineterminator="\n")
            writer.writerows([("text", "label"), *rows])
    return path


TRAIN = [("the cat sat", "pets"), ("a dog ran, the dog sat", "pets"), ("stocks fell", "money"), ("the bank paid", "money")]


def test_the_vocabulary_comes_from_the_training_split_only(tmp_path):
    train = write_table(tmp_path / "train.csv", TRAIN)
    test = write_table(tmp_path / "test.csv", [("zebra zebra zebra the", "money")])
    spec = TextData(source="text", path=str(train), test_path=str(test), max_length=5, split={"validation": 0.25, "test": 0.0, "seed": 3})
    source = load_source(spec)
    step = source.preprocessing.fields["tokens"][0]
    trained_on = [text for (text, _), line in zip(TRAIN, range(2, 6)) if line in source.rows["train"].lines]
    assert len(trained_on) == 3
    assert step.vocabulary == text_vocabulary(step, trained_on)  # the carved validation row taught nothing
    assert "zebra" not in step.vocabulary
    np.testing.assert_array_equal(source.splits["test"]["tokens"], [[1, 1, 1, step.vocabulary.index("the") + 2, 0]])
    np.testing.assert_array_equal(source.splits["test"]["length"], [4])
    assert source.class_names == ["money", "pets"]  # sorted, as the csv source names classes
    np.testing.assert_array_equal(source.splits["test"]["label"], [0])


@pytest.mark.parametrize("form, suffix", [("tsv", ".tsv"), ("jsonl", ".jsonl"), ("jsonl", ".txt")])
def test_tsv_and_json_lines_give_what_csv_gives(tmp_path, form, suffix):
    rows = TRAIN + [("a tab\tand a, comma", "pets")] * (form != "tsv")
    settings = {"max_length": 4, "classes": ["pets", "money"], "split": {"validation": 0.2, "test": 0.2}}
    expected = load_source(TextData(source="text", path=str(write_table(tmp_path / "t.csv", rows)), **settings))
    path = write_table(tmp_path / f"t{suffix}", rows, form)
    got = load_source(TextData(source="text", path=str(path), format=None if suffix != ".txt" else form, **settings))
    assert got.class_names == ["pets", "money"]
    assert got.preprocessing.fields == expected.preprocessing.fields
    for split in ("train", "validation", "test"):
        for name in ("tokens", "length", "label"):
            np.testing.assert_array_equal(got.splits[split][name], expected.splits[split][name])


def test_integer_labels_stay_class_indices(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a b", "label": 1}\n\n{"text": "c", "label": 0}\n')
    source = load_source(TextData(source="text", path=str(path), max_length=2, split={"validation": 0.0, "test": 0.0}))
    np.testing.assert_array_equal(source.splits["train"]["label"], [1, 0])
    assert source.rows["train"].lines == [1, 3]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file (the JSON-lines file named in the spec's data section)"),
        ('{"text": "a", "label": "x"}\n{"text": "b", \n', "t.jsonl:2: error: not a JSON value"),
        ('{"text": "a", "label": "x"}\n[1]\n', 't.jsonl:2: error: a JSON-lines file holds one object per line, e.g. {"text": "...", "label": "..."}'),
        ('{"txt": "a", "label": "x"}\n', "t.jsonl:1: error: field 'text': no key 'text' (did you mean 'txt'?); the keys are txt, label"),
        (b'{"text": "caf\xe9", "label": "x"}\n', "t.jsonl: error: not UTF-8 text"),
        ("\n\n", "t.jsonl: error: no data rows"),
    ],
)
def test_a_missing_or_corrupt_file_says_which_and_why(tmp_path, content, message, write_spec, tfn_cli):
    path = tmp_path / "t.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    spec = write_spec(SPEC.replace("path: shipped:reviews.csv", f"path: {path}"))
    code, _, err = tfn_cli("train", str(spec), "--out", str(tmp_path / "run"))
    assert code == 2 and message in err and "Traceback" not in err


SPEC = """
version: 1
name: words
model:
  inputs:
    tokens: {shape: [8], dtype: int64}
    length: {shape: [], dtype: int64}
  layers:
    - {name: embedded, op: embedding, input_dim: 64, output_dim: 4, inputs: [tokens]}
    - {name: lstm, op: lstm, units: 4, inputs: [embedded, length]}
    - {name: logits, op: dense, units: 2}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
optimizer: {type: adam, learning_rate: 0.01}
data:
  source: text
  path: shipped:reviews.csv
  max_tokens: 64
  max_length: 8
  batch_size: 64
train: {steps: 3, seed: 0}
"""


def test_spec_mistakes_are_positioned(write_spec, tfn_cli, tmp_path):
    bad = SPEC.replace("  max_length: 8\n", "  max_lenght: 8\n  tokenize: regex\n  separator: '('\n  standardize: lowercase\n")
    code, _, err = tfn_cli("check", str(write_spec(bad)))
    assert code == 2
    lines = [line.split("/spec.yaml:", 1)[1] for line in err.strip().splitlines()]
    assert "17:3: error: data.max_lenght: unknown attribute 'max_lenght' (did you mean 'max_length'?)" in lines
    assert "19:14: error: data.separator: separator '(' is not a regular expression: missing ), unterminated subpattern at position 0" in lines
    assert any(line.startswith("20:16: error: data.standardize:") and "lower_and_strip_punctuation" in line for line in lines)
    code, _, err = tfn_cli("check", str(write_spec(SPEC.replace("shipped:reviews.csv", "shipped:review.csv"))))
    assert code == 2 and "spec.yaml:15:9: error: data.path: shipped:review.csv: tfn ships no data file 'review.csv' (did you mean 'shipped:reviews.csv'?)" in err
    rows = write_table(tmp_path / "r.csv", TRAIN)
    code, _, err = tfn_cli("check", str(write_spec(SPEC.replace("path: shipped:reviews.csv", f"path: {rows}\n  text: txt"))))
    assert code == 2 and f"spec.yaml:16:9: error: data.text: {rows}:1: field 'text': no column 'txt' (did you mean 'text'?)" in err
    code, out, err = tfn_cli("check", str(write_spec(SPEC)))
    assert code == 0, err
    assert "data: source text gives tokens [8] int64, length [] int64, label [] int64: they fit the graph's inputs" in out


# --- the record round trip ------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    from tfn.runners.train import train
    from tfn.specs import load

    root = tmp_path_factory.mktemp("text")
    spec = root / "spec.yaml"
    spec.write_text(SPEC)
    return train(load(spec), out=root / "run", quiet=True).run_dir


def test_predict_text_gives_the_evaluation_pipeline_s_logits(text_run, tfn_cli):
    from tfn.runners.preprocessing import for_model
    from tfn.runners.session import load_model, predict, run
    from tfn.specs import load

    record = Preprocessing.read(text_run / FILE)
    assert {name: [step.kind for step in steps] for name, steps in record.fields.items()} == {"tokens": ["text"], "length": ["text_length"], "label": ["csv"]}
    reviews = list(csv.DictReader((DATASETS / "reviews.csv").read_text(encoding="utf-8").splitlines()))
    source = load_source(load(text_run / "spec.yaml").spec.data, for_model(text_run))  # as tfn eval reads it
    test = source.splits["test"]
    texts = [reviews[line - 2]["text"] for line in source.rows["test"].lines[:4]]

    model = load_model(text_run)
    logits = run(model, {"tokens": test["tokens"][:4], "length": test["length"][:4]}, ["logits"]).values["logits"].astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(predict(model, texts=texts, top_k=2).probabilities, expected, rtol=1e-6)
    np.testing.assert_allclose(predict(model, texts=texts[0]).probabilities, expected[:1], rtol=1e-6)  # one text, not its characters

    code, out, err = tfn_cli("predict", str(text_run), *(a for t in texts for a in ("--text", t)), "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert [p["input"] for p in printed] == texts
    got = np.array([[t["probability"] for t in sorted(p["top"], key=lambda t: t["class"])] for p in printed])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert {t["label"] for t in printed[0]["top"]} == {"negative", "positive"}

    # tfn run --feed: a text fed to a text field becomes its ids or length
    fetched = text_run.parent / "fetched.npz"
    code, out, err = tfn_cli("run", str(text_run), "--feed", f"tokens={texts[0]}", "--feed", f"length={texts[0]}", "--fetch", "logits", "--out", str(fetched))
    assert code == 0, err
    assert "tokens <- " in err and "ids over" in err and "the number of tokens up to 8" in err
    with np.load(fetched) as values:
        np.testing.assert_allclose(values["logits"], logits[:1], rtol=1e-6)


def test_predict_text_errors(text_run, tfn_cli, minimal_spec):
    code, _, err = tfn_cli("predict", str(text_run))
    assert code == 2 and "give INPUTS (files) or --text, one of the two" in err
    code, _, err = tfn_cli("predict", str(minimal_spec), "--text", "hello")
    assert code == 2 and "--text: error: the preprocessing record (from the data section of" in err and "makes no field from a text" in err


# --- the shipped data set ---------------------------------------------------------------------


def test_the_shipped_reviews_are_what_their_script_makes():
    script = DATASETS / "make_reviews.py"
    spec = importlib.util.spec_from_file_location("make_reviews", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (DATASETS / "reviews.csv").read_text(encoding="utf-8")
    assert text == module.generate()
    assert len(text.encode()) < 300_000
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == module.REVIEWS and {r["label"] for r in rows} == {"positive", "negative"}
    assert "make_reviews.py" in (DATASETS / "README.md").read_text() and "Apache-2.0" in script.read_text()

    # every label is the main clause's sentiment, read here from the words by a rule of its own
    positive, negative = set(module.POSITIVE), set(module.NEGATIVE)

    def sentiment(clause: str) -> bool:
        words = clause.split()
        (adjective,) = [w for w in words if w in positive | negative]
        return (adjective in positive) != ("not" in words)

    forms = set()
    for row in rows:
        words = row["text"].lower().replace(",", "").rstrip(".")
        if words.startswith("although "):
            first, second = re.fullmatch(r"although (the .*?) (the .*)", words).groups()
            main, form = second, "although"
        elif " even though " in words:
            first, second = words.split(" even though ")
            main, form = first, "even though"
        else:
            first, second = words.split(" but ")
            main, form = second, "but"
        forms.add(form)
        assert row["label"] == ("positive" if sentiment(main) else "negative"), row
    assert forms == {"although", "even though", "but"}
