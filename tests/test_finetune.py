"""Fine-tuning: CLUE and table readers, metrics, bin/finetune end to end
(learning, search, predictions, exports), replicas."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import tensorflow as tf

import hf_fixtures
import script_runs
from tf_minilm import convert
from tf_minilm import finetune
from tf_minilm import finetune_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNE = os.path.join(REPO, "bin", "finetune")
WORDS = ["the", "and", "hello", "world", "distill", "student", "a", "b", "c"]


def _write_lines(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write((record if isinstance(record, str) else
               json.dumps(record, ensure_ascii=False)) + "\n")
  return path


def _marker_examples(n, seed, shuffle_labels=False):
  """label yes iff the word "teacher" occurs: solvable only by reading."""
  rng = random.Random(seed)
  records = []
  for _ in range(n):
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
    marked = rng.random() < 0.5
    if marked:
      words.insert(rng.randrange(len(words) + 1), "teacher")
    records.append({"text": " ".join(words), "label": "yes" if marked else "no"})
  if shuffle_labels:
    labels = [r["label"] for r in records]
    rng.shuffle(labels)
    for record, label in zip(records, labels):
      record["label"] = label
  return records


class ClueReaderTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.get_temp_dir()

  def _task(self, task, train, test=None):
    d = os.path.join(self.dir, task)
    _write_lines(os.path.join(d, "train.json"), train)
    if test is not None:
      _write_lines(os.path.join(d, "test.json"), test)
    return d

  def test_each_clue_layout(self):
    cases = {
        "afqmc": ([{"sentence1": "花呗怎么还", "sentence2": "花呗如何还款",
                    "label": "1"}], ("花呗怎么还", "花呗如何还款", 1)),
        "tnews": ([{"label": "108", "label_desc": "news_edu",
                    "sentence": "高考成绩公布", "keywords": ""}],
                  ("高考成绩公布", None, 7)),
        "iflytek": ([{"label": "110", "label_des": "社区超市",
                      "sentence": "一款购物应用"}], ("一款购物应用", None, 110)),
        "cmnli": ([{"sentence1": "他来了", "sentence2": "他没来",
                    "label": "contradiction"},
                   {"sentence1": "x", "sentence2": "y", "label": "-"}],
                  ("他来了", "他没来", 0)),
        "ocnli": ([{"sentence1": "天晴了", "sentence2": "天气好",
                    "label": "entailment", "genre": "news"}],
                  ("天晴了", "天气好", 0)),
        "cluewsc2020": ([{"target": {"span2_index": 5, "span1_index": 0,
                                     "span1_text": "小明", "span2_text": "他"},
                          "idx": 0, "label": "true", "text": "小明说今天他很累"}],
                        ("_小明_说今天[他]很累", None, 0)),
        "csl": ([{"id": 1, "abst": "本文研究蒸馏。", "keyword": ["蒸馏", "模型"],
                  "label": "0"}], ("蒸馏 模型", "本文研究蒸馏。", 0)),
    }
    for task, (records, (text, pair, label)) in cases.items():
      with self.subTest(task=task):
        data = finetune_data.read_clue(self._task(task, records), task, "train")
        self.assertLen(data.examples, 1)  # CMNLI's "-" row is skipped
        example = data.examples[0]
        self.assertEqual((example.text, example.text_pair, example.label),
                         (text, pair, label))
        self.assertEqual(data.labels, finetune_data.CLUE_LABELS[task])
    test = finetune_data.read_clue(
        self._task("afqmc", cases["afqmc"][0],
                   [{"id": 17, "sentence1": "a", "sentence2": "b"}]),
        "afqmc", "test")
    self.assertEqual((test.examples[0].id, test.examples[0].label), (17, None))

  def test_bad_lines_are_named(self):
    cases = [
        ("afqmc", [{"sentence1": "a", "sentence2": "b", "label": "2"}],
         r"train.json:1: field 'label' has the unknown label '2'; expected one "
         r"of \['0', '1'\]"),
        ("afqmc", [{"sentence1": "a", "label": "1"}],
         r"train.json:1: missing field 'sentence2'"),
        ("tnews", ["", "{not json"], r"train.json:2: not a JSON object"),
        ("cluewsc2020", [{"text": "小明说", "label": "true", "target": {
            "span1_text": "小红", "span1_index": 0, "span2_text": "说",
            "span2_index": 2}}], r"target.span1_index 0 does not point at "
                                 r"span1_text '小红'"),
        ("csl", [], r"train.json: no examples"),
    ]
    for task, records, message in cases:
      with self.subTest(task=task, message=message):
        with self.assertRaisesRegex(finetune_data.DataFormatError, message):
          finetune_data.read_clue(self._task(task, records), task, "train")

  def test_tables(self):
    csv_path = os.path.join(self.dir, "t.csv")
    with open(csv_path, "w", encoding="utf-8") as f:
      f.write("text,other,label\n\"a, b\",x,pos\nc,y,neg\n")
    data = finetune_data.read_table(csv_path, "text", "label",
                                    text_pair_column="other")
    self.assertEqual(data.labels, ("neg", "pos"))
    self.assertEqual([(e.text, e.text_pair, e.label) for e in data.examples],
                     [("a, b", "x", 1), ("c", "y", 0)])
    tsv_path = os.path.join(self.dir, "t.tsv")
    with open(tsv_path, "w", encoding="utf-8") as f:
      f.write("sentence\tlabel\nhello\tpos\nbye\tmaybe\n")
    with self.assertRaisesRegex(finetune_data.DataFormatError,
                                r"t.tsv:3: field 'label' has the unknown label "
                                r"'maybe'"):
      finetune_data.read_table(tsv_path, "sentence", "label",
                               labels=data.labels)
    with self.assertRaisesRegex(finetune_data.DataFormatError,
                                r"t.tsv:2: missing field 'text'"):
      finetune_data.read_table(tsv_path, "text", "label")
    with self.assertRaisesRegex(finetune_data.DataFormatError,
                                "cannot tell the format"):
      finetune_data.read_table(os.path.join(self.dir, "t.xlsx"), "a", "b")

  def _table(self, name, content, mode="w", encoding="utf-8"):
    path = os.path.join(self.dir, name)
    with open(path, mode, **({} if "b" in mode else {"encoding": encoding})
              ) as f:
      f.write(content)
    return path

  def test_labels_that_are_missing_or_ambiguous_are_refused(self):
    cases = [
        ("null.jsonl", '{"text": "a", "label": null}\n{"text": "b", '
         '"label": "x"}\n', r"null.jsonl:1: field 'label' has no usable "
         r"label \(null\)"),
        ("empty.csv", "text,label\na,\nb,x\n",
         r"empty.csv:2: field 'label' is empty"),
        ("short.csv", "text,label\na\nb,x\n",
         r"short.csv:2: fewer fields than the header's 2"),
        ("numbers.jsonl", '{"text": "a", "label": 1}\n{"text": "b", '
         '"label": "1.0"}\n', r"numbers.jsonl: the labels '1' and '1.0' "
         r"name the same number"),
        ("one.csv", "text,label\na,x\nb,x\n",
         r"one.csv: every example has the label 'x'; a classifier needs at "
         r"least two classes"),
        ("twice.csv", "text,label,text\na,x,b\n",
         r"twice.csv:1: the header names the columns \['text'\] more than "
         r"once"),
    ]
    for name, content, message in cases:
      with self.subTest(file=name):
        with self.assertRaisesRegex(finetune_data.DataFormatError, message):
          finetune_data.read_table(self._table(name, content), "text",
                                   "label")

  def test_json_numbers_1_and_1_0_are_one_class(self):
    path = self._table("float.jsonl", '{"text": "a", "label": 1}\n'
                       '{"text": "b", "label": 1.0}\n{"text": "c", '
                       '"label": 0}\n')
    data = finetune_data.read_table(path, "text", "label")
    self.assertEqual(data.labels, ("0", "1"))
    self.assertEqual([e.label for e in data.examples], [1, 1, 0])

  def test_missing_id_column_is_refused(self):
    path = self._table("ids.jsonl", '{"text": "a", "id": 7}\n'
                       '{"text": "b"}\n')
    with self.assertRaisesRegex(finetune_data.DataFormatError,
                                r"ids.jsonl:2: missing field 'id'"):
      finetune_data.read_table(path, "text", None, id_column="id")

  def test_encodings_and_long_fields(self):
    utf16 = self._table("utf16.csv", "text,label\nné,x\nb,y\n",
                        encoding="utf-16")
    self.assertEqual(finetune_data.read_table(utf16, "text", "label")
                     .examples[0].text, "né")
    latin1 = self._table("latin1.csv", "text,label\nok,x\nn\xe9,y\n".encode(
        "latin-1"), mode="wb")
    with self.assertRaisesRegex(finetune_data.DataFormatError,
                                r"latin1.csv:3: not UTF-8 text \(byte "
                                r"b'\\xe9' at offset 17\); save the file as "
                                "UTF-8"):
      finetune_data.read_table(latin1, "text", "label")
    long_text = "w " * 100_000
    wide = self._table("wide.csv", f"text,label\n{long_text},x\nb,y\n")
    self.assertLen(finetune_data.read_table(wide, "text", "label")
                   .examples[0].text, len(long_text))

  def test_metrics(self):
    labels = np.array([0, 0, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 2, 2, 0])
    result = finetune.metrics(labels, predictions, 3)
    self.assertAllClose(result["accuracy"], 4 / 6)
    # F1 per class: 0: 2*1/(2+2)=0.5, 1: 2*1/(2+1)=0.667, 2: 2*2/(2+3)=0.8
    self.assertAllClose(result["macro_f1"], (0.5 + 2 / 3 + 0.8) / 3)
    self.assertNotIn("macro_f1", finetune.metrics(labels[:3] % 2,
                                                  predictions[:3] % 2, 2))


class FinetuneInputChecksTest(hf_fixtures.TinyModelTestCase):
  """What `finetune.run` refuses before it trains or writes anything."""
  TINY_MODEL = dict(num_hidden_layers=1)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = cls.model_dir
    cls.train = _write_lines(os.path.join(cls.root, "data", "train.jsonl"),
                             _marker_examples(20, 1))
    cls.dev = _write_lines(os.path.join(cls.root, "data", "dev.jsonl"),
                           _marker_examples(10, 2))

  def _model_with_vocab(self, name, edit):
    import shutil  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.root, name)
    if not os.path.isdir(path):
      shutil.copytree(self.model, path)
      vocab_path = os.path.join(path, "vocab.txt")
      with open(vocab_path, encoding="utf-8") as f:
        vocab = f.read().split("\n")[:-1]
      with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(edit(vocab)) + "\n")
    return path

  def _refused(self, message, output_dir=None, **overrides):
    from tf_minilm import config as config_lib  # pylint: disable=g-import-not-at-top
    output_dir = output_dir or os.path.join(self.root, "never")
    values = dict(model_name_or_path=self.model, output_dir=output_dir,
                  train_file=self.train, dev_file=self.dev, device="cpu",
                  max_seq_length=16, batch_size=8)
    values.update(overrides)
    existed = os.path.exists(output_dir)
    before = sorted(os.listdir(output_dir)) if existed else None
    with self.assertRaises(config_lib.ConfigError) as raised:
      finetune.run(config_lib.FinetuneConfig(**values))
    self.assertIn(message, str(raised.exception))
    self.assertEqual(os.path.exists(output_dir), existed)
    if existed:
      self.assertEqual(sorted(os.listdir(output_dir)), before)

  def test_an_input_inside_the_output_dir_is_refused(self):
    out = os.path.join(self.root, "holds_input")
    test_file = _write_lines(os.path.join(out, "custom_predict.json"),
                             [{"text": "keep me"}])
    self._refused(f"--test_file={test_file}: lies inside --output_dir={out}",
                  output_dir=out, test_file=test_file)
    with open(test_file, encoding="utf-8") as f:
      self.assertEqual(f.read(), '{"text": "keep me"}\n')

  def test_another_tools_run_directory_is_refused(self):
    out = os.path.join(self.root, "distill_run")
    _write_lines(os.path.join(out, "distill_config.json"), ["{}"])
    self._refused("holds a bin/distill run (distill_config.json)",
                  output_dir=out)

  def test_source_that_does_not_fit_the_flags_is_refused(self):
    long_vocab = self._model_with_vocab(
        "long_vocab", lambda v: v + [f"extra{i}" for i in range(5)])
    self._refused("vocab.txt has 104 tokens but the model embeds only 99",
                  model_name_or_path=long_vocab)
    pad_later = self._model_with_vocab(
        "pad_later", lambda v: [v[1], v[0]] + v[2:])
    self._refused("[PAD] must have id 0", model_name_or_path=pad_later)
    other_pad = self._model_with_vocab("other_pad", lambda v: v)
    hf_fixtures.edit_json(os.path.join(other_pad, "config.json"),
                          pad_token_id=1)
    self._refused("vocab.txt pads with id 0 but the model's pad_token_id is 1",
                  model_name_or_path=other_pad)
    self._refused("--max_seq_length=64: exceeds the 40 token positions "
                  "(max_position_embeddings 40) the model embeds",
                  max_seq_length=64)
    # RoBERTa positions start after the padding id; XLM-R pairs take 4
    # special tokens.
    xlmr = os.path.join(self.root, "xlmr_source")
    hf_fixtures.xlmr_teacher_dir(xlmr)
    self._refused("--max_seq_length=41: exceeds the 40 token positions "
                  "(max_position_embeddings 42, of which RoBERTa-style "
                  "positions use those after the padding id 1)",
                  model_name_or_path=xlmr, max_seq_length=41)
    self._refused("--max_seq_length=3: must be >= 4, the special tokens",
                  model_name_or_path=xlmr, max_seq_length=3)

  def test_every_grid_setting_is_checked_before_the_first_trains(self):
    self._refused("--batch_sizes=8,400: the 20 training examples make no "
                  "step of 400", batch_sizes="8,400")
    self._refused("--learning_rates=2e-5,2.0000001e-5: learning rate 2e-05 "
                  "/ batch size 8 is listed twice",
                  learning_rates="2e-5,2.0000001e-5")

  def test_a_bad_dev_line_names_the_dev_file(self):
    bad_dev = _write_lines(os.path.join(self.root, "bad", "dev.jsonl"),
                           [{"text": "a", "label": None}])
    self._refused(f"--dev_file={bad_dev}: {bad_dev}:1: field 'label' has no "
                  "usable label (null)", dev_file=bad_dev)


class FinetuneEndToEndTest(hf_fixtures.TinyModelTestCase):
  TINY_MODEL = dict(num_hidden_layers=2)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = cls.model_dir

  def finetune(self, flags, expect_rc=0):
    return script_runs.run_script(self, FINETUNE, flags, expect_rc)

  def _custom_task(self, name, shuffle_labels=False):
    d = os.path.join(self.root, name)
    for split, n, seed in (("train", 480, 1), ("dev", 120, 2)):
      _write_lines(os.path.join(d, f"{split}.jsonl"),
                   _marker_examples(n, seed, shuffle_labels and
                                    split == "train"))
    _write_lines(os.path.join(d, "test.jsonl"),
                 [{"text": t} for t in ("the teacher", "hello world")])
    return d

  def _flags(self, data_dir, out, **overrides):
    values = dict(model_name_or_path=self.model, output_dir=out,
                  train_file=os.path.join(data_dir, "train.jsonl"),
                  dev_file=os.path.join(data_dir, "dev.jsonl"), device="cpu",
                  max_seq_length=32, batch_size=16, learning_rate=3e-3,
                  epochs=3, logging_steps=1000, seed=3)
    values.update(overrides)
    return [f"--{k}={v}" for k, v in values.items()]

  def test_learns_the_task_and_not_shuffled_labels_and_exports(self):
    data_dir = self._custom_task("marker")
    out = os.path.join(self.root, "learned")
    proc = self.finetune(self._flags(
        data_dir, out, test_file=os.path.join(data_dir, "test.jsonl"),
        int8=True))
    with open(os.path.join(out, "eval_results.json")) as f:
      results = json.load(f)
    best = max(r["accuracy"] for r in results.values())
    print(f"\nmarker task: dev accuracy per epoch "
          f"{[round(r['accuracy'], 4) for r in results.values()]}")
    self.assertGreaterEqual(best, 0.95)
    self.assertIn("best epoch", proc.stdout)
    self.assertEqual(proc.stderr.strip(), "")  # no start-up or INFO noise
    with open(os.path.join(out, "custom_predict.json")) as f:
      self.assertEqual([json.loads(l) for l in f],
                       [{"id": 0, "label": "yes"}, {"id": 1, "label": "no"}])

    shuffled = os.path.join(self.root, "shuffled")
    self.finetune(self._flags(self._custom_task("marker_shuffled", True),
                              shuffled))
    with open(os.path.join(shuffled, "eval_results.json")) as f:
      chance = max(r["accuracy"] for r in json.load(f).values())
    print(f"shuffled labels: best dev accuracy {chance:.4f}")
    self.assertLess(chance, 0.7)

    # The best model: Keras, the SavedModel in a fresh process, transformers.
    best_dir = os.path.join(out, finetune.BEST_MODEL)
    classifier, info = finetune.load_classifier(best_dir)
    texts = ["the teacher said hello", "hello world and a b",
             "student distill teacher"]
    from tf_minilm import tokenization  # pylint: disable=g-import-not-at-top
    tokenizer = tokenization.BertTokenizer.from_model_dir(self.model)
    batch = finetune.make_encoder(tokenizer, 64, False)(
        tf.constant(texts), tf.constant([""] * 3), tf.constant([0] * 3))
    want = classifier.model(finetune.model_inputs(batch)).numpy()
    script = (
        "import json, sys; import tensorflow as tf; import tensorflow_text\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](text=tf.constant("
        "json.loads(sys.argv[2])))\n"
        "print(json.dumps({'logits': out['logits'].numpy().tolist(), "
        "'label': [l.decode() for l in out['label'].numpy()], 'modules': "
        "sorted(n for n in sys.modules if n.startswith('tf_minilm'))}))\n")
    served = subprocess.run(
        [sys.executable, "-c", script, os.path.join(best_dir, "saved_model"),
         json.dumps(texts)], capture_output=True, text=True, timeout=300)
    self.assertEqual(served.returncode, 0, served.stderr[-3000:])
    served = json.loads(served.stdout.strip().splitlines()[-1])
    self.assertAllClose(served["logits"], want, atol=1e-5, rtol=0)
    self.assertEqual(served["label"], [info["labels"][i]
                                       for i in want.argmax(-1)])
    self.assertEqual(served["modules"], [])
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    hf = transformers.BertForSequenceClassification.from_pretrained(
        os.path.join(best_dir, "hf")).eval()
    self.assertEqual(hf.config.id2label, {0: "no", 1: "yes"})
    with torch.no_grad():
      logits = hf(input_ids=torch.tensor(batch["token_ids"].numpy(),
                                         dtype=torch.long),
                  attention_mask=torch.tensor(
                      batch["padding_mask"].numpy().astype(np.int64))).logits
    self.assertAllClose(logits.numpy(), want, atol=1e-5, rtol=0)
    # --int8: ONNX Runtime on transformers' ids, float32 and int8.
    from tf_minilm import onnx_export  # pylint: disable=g-import-not-at-top
    feed = dict(transformers.AutoTokenizer.from_pretrained(
        os.path.join(best_dir, "hf"))(texts, padding=True, return_tensors="np"))
    for name, tolerance in ((onnx_export.FLOAT32_FILE, 1e-5),
                            (onnx_export.INT8_FILE, 0.15)):
      session = onnx_export.session(
          os.path.join(best_dir, "hf", "onnx", name))
      logits, probabilities = session.run(["logits", "probabilities"], feed)
      self.assertAllClose(logits, want, atol=tolerance, rtol=0)
      self.assertAllClose(probabilities, tf.nn.softmax(want),
                          atol=tolerance, rtol=0)
      self.assertEqual(json.loads(session.get_modelmeta().custom_metadata_map[
          "id2label"]), {"0": "no", "1": "yes"})

  def test_search_on_a_clue_pair_task_writes_table_and_submission(self):
    d = os.path.join(self.root, "afqmc")
    rng = random.Random(5)
    def pairs(n, labelled=True):
      rows = []
      for i in range(n):
        a = " ".join(rng.choice(WORDS) for _ in range(4))
        same = rng.random() < 0.5
        row = {"sentence1": a, "sentence2": a if same else "teacher " + a}
        if labelled:
          row["label"] = "1" if same else "0"
        else:
          row["id"] = 100 + i
        rows.append(row)
      return rows
    _write_lines(os.path.join(d, "train.json"), pairs(96))
    _write_lines(os.path.join(d, "dev.json"), pairs(32))
    _write_lines(os.path.join(d, "test.json"), pairs(5, labelled=False))
    out = os.path.join(self.root, "search")
    self.finetune(["--task=afqmc", f"--data_dir={d}",
                   f"--model_name_or_path={self.model}", f"--output_dir={out}",
                   "--device=cpu", "--epochs=1", "--max_seq_length=32",
                   "--learning_rates=1e-3,3e-3", "--batch_sizes=8",
                   "--logging_steps=1000"])
    with open(os.path.join(out, "results.csv")) as f:
      rows = f.read().splitlines()
    self.assertEqual(rows[0], "learning_rate,batch_size,epoch,accuracy,"
                              "directory")
    self.assertLen(rows, 3)
    with open(os.path.join(out, "results.md")) as f:
      self.assertEqual(f.read().count("**best**"), 1)
    for setting in ("lr0.001_bs8", "lr0.003_bs8"):
      with open(os.path.join(out, setting, "afqmc_predict.json")) as f:
        lines = [json.loads(l) for l in f]
      self.assertEqual([l["id"] for l in lines], [100, 101, 102, 103, 104])
      self.assertTrue(all(l["label"] in ("0", "1") for l in lines))

  def test_bad_input_exits_2_and_writes_nothing(self):
    data_dir = self._custom_task("bad_inputs")
    bad_dev = _write_lines(os.path.join(self.root, "bad_dev.jsonl"),
                           [{"text": "a", "label": "perhaps"}])
    out = os.path.join(self.root, "never")
    cases = [
        (dict(dev_file=bad_dev), "bad_dev.jsonl:1: field 'label' has the "
                                 "unknown label 'perhaps'"),
        (dict(model_name_or_path=data_dir), "holds no vocab.txt"),
        (dict(batch_size=1000), "--batch_size=1000: the 480 training examples "
                                "make no step"),
        (dict(learning_rates="1e-3,fast"), "--learning_rates=1e-3,fast: must "
                                           "be a comma-separated list"),
        (dict(task="afqmc"), "--data_dir=: is required with --task=afqmc"),
    ]
    for overrides, message in cases:
      with self.subTest(**{k: str(v) for k, v in overrides.items()}):
        proc = self.finetune(self._flags(data_dir, out, **overrides),
                             expect_rc=2)
        self.assertIn(message, proc.stderr)
        self.assertFalse(os.path.exists(out))

  def test_resume_after_a_stop_matches_an_uninterrupted_run(self):
    data_dir = self._custom_task("resume")
    straight = os.path.join(self.root, "resume_straight")
    resumed = os.path.join(self.root, "resume_stopped")
    common = dict(epochs=2, learning_rate=1e-3)
    self.finetune(self._flags(data_dir, straight, **common))
    self.finetune(self._flags(data_dir, resumed, exit_after_steps=40,
                              **common), expect_rc=75)
    self.assertFalse(os.path.exists(os.path.join(resumed, "best_model")))
    self.finetune(self._flags(data_dir, resumed, **common))
    for name in ("model_30", "model_60"):
      path = lambda d: os.path.join(d, name, "hf", "model.safetensors")
      a = convert.read_safetensors(path(straight))
      b = convert.read_safetensors(path(resumed))
      for tensor in a:
        self.assertAllEqual(a[tensor], b[tensor], msg=f"{name}: {tensor}")
    with open(os.path.join(straight, "eval_results.json")) as f:
      want = json.load(f)
    with open(os.path.join(resumed, "eval_results.json")) as f:
      self.assertEqual(json.load(f), want)

  def test_two_replicas_train_like_one(self):
    model = os.path.join(self.root, "no_dropout_model")
    hf_fixtures.make_hf_model(model, num_hidden_layers=2, hidden_size=24,
                              num_attention_heads=3, intermediate_size=37,
                              hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
    data_dir = self._custom_task("replicas")
    weights = {}
    for replicas in (1, 2):
      out = os.path.join(self.root, f"replicas_{replicas}")
      self.finetune(self._flags(data_dir, out, model_name_or_path=model,
                                cpu_replicas=replicas, batch_size=16 // replicas,
                                dropout=0.0, epochs=1))
      path = os.path.join(out, "model_30", "hf", "model.safetensors")
      weights[replicas] = {k: np.array(v) for k, v in
                           convert.read_safetensors(path).items()}
    for name, value in weights[1].items():
      self.assertAllClose(weights[2][name], value, atol=1e-6, rtol=0, msg=name)


if __name__ == "__main__":
  tf.test.main()
