"""Tests of corpus preparation (`bin/prepare_corpus`) and reading its shards back."""

import collections
import gzip
import json
import os
import subprocess
import sys

import tensorflow as tf

from tf_minilm import corpus
from tf_minilm import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shard_lines(directory):
  lines = []
  for path in data.list_shards(directory):
    with open(path, encoding="utf-8") as f:
      lines += f.read().splitlines()
  return lines


class CorpusTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = os.path.join(self.get_temp_dir(), self.id().split(".")[-1])
    os.makedirs(self.dir, exist_ok=True)

  def _file(self, name, content, mode="w"):
    path = os.path.join(self.dir, name)
    if "b" in mode:  # raw bytes, written as they are
      with open(path, mode) as f:
        f.write(content)
    elif name.endswith(".gz"):
      with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(content)
    else:
      with open(path, mode, encoding="utf-8") as f:
        f.write(content)
    return path

  def _prepare(self, inputs, **kwargs):
    out = os.path.join(self.dir, "out")
    kwargs.setdefault("progress", False)
    return corpus.prepare(corpus.CorpusConfig(inputs=inputs, output_dir=out,
                                              **kwargs)), out

  def test_split_sentences(self):
    self.assertEqual(
        corpus.split_sentences("今天很好。我们走吧！“真的吗？”他问；好…"
                               "Hello there. Is it? Yes!"),
        ["今天很好。", "我们走吧！", "“真的吗？”", "他问；", "好…",
         "Hello there.", "Is it?", "Yes!"])
    self.assertEqual(corpus.split_sentences("version 3.5 is out"),
                     ["version 3.5 is out"])

  def test_round_trip_every_sentence_once_and_reproducible(self):
    paragraphs = [f"第{i}句话。Sentence number {i}! 还有{i}？" for i in range(300)]
    text = "\n\n".join(paragraphs) + "\n  \n"
    path = self._file("raw.txt", text)
    manifest, out = self._prepare([path], num_shards=7, seed=3)
    want = collections.Counter(s for p in paragraphs
                               for s in corpus.split_sentences(p))
    got = _shard_lines(out)
    self.assertEqual(collections.Counter(got), want)
    self.assertEqual(manifest["sentences"], 900)
    self.assertLen(manifest["shards"], 7)
    sizes = [s["sentences"] for s in manifest["shards"]]
    self.assertLess(max(sizes) - min(sizes), 60)
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
      self.assertEqual(json.load(f)["seed"], 3)
    again, out2 = manifest, out + "2"
    again = corpus.prepare(corpus.CorpusConfig(
        inputs=[path], output_dir=out2, num_shards=7, seed=3, progress=False))
    self.assertEqual(_shard_lines(out), _shard_lines(out2))
    self.assertNotEqual(got[:50], sorted(got)[:50])  # shuffled
    # The training pipeline reads the shards back.
    config = data.PipelineConfig(repeat=False, shuffle_buffer=0)
    lines = [l.numpy().decode() for l in data.line_dataset(
        data.list_shards(out), config)]
    self.assertEqual(collections.Counter(lines), want)
    del again

  def test_json_lines_gzip_dedup_and_lengths(self):
    records = [json.dumps({"text": t}, ensure_ascii=False)
               for t in ["短句。", "这是一个比较长的句子。", "这是一个比较长的句子。",
                         "短"]]
    records += ["not json", json.dumps({"other": 1}), json.dumps({"text": 5})]
    path = self._file("data.jsonl.gz", "\n".join(records) + "\n")
    manifest, out = self._prepare([path], num_shards=2, json_field="text",
                                  deduplicate=True, min_length=3)
    self.assertEqual(sorted(_shard_lines(out)), ["短句。", "这是一个比较长的句子。"])
    self.assertEqual(manifest["counts"]["bad_json_lines"], 3)
    self.assertEqual(manifest["counts"]["duplicates"], 1)
    self.assertEqual(manifest["counts"]["dropped_by_length"], 1)
    manifest, out = self._prepare([path], num_shards=1, json_field="text",
                                  max_length=4, overwrite=True)
    self.assertEqual(sorted(_shard_lines(out)), ["短", "短句。"])

  def test_bad_bytes_nul_controls_and_a_huge_line(self):
    content = (b"good line.\n" + b"bad \xff\xfe bytes.\n" + b"nul\x00here.\n" +
               b"zero\xe2\x80\x8bwidth.\n" + b"x" * (10 << 20))
    path = self._file("bad.bin", content, mode="wb")
    manifest, out = self._prepare([path], num_shards=3)
    lines = _shard_lines(out)
    for want in ("good line.", "bad  bytes.", "nulhere.", "zerowidth."):
      self.assertIn(want, lines)
    self.assertEqual(manifest["counts"]["lines_with_invalid_utf8"], 1)
    self.assertEqual(manifest["counts"]["lines_with_nul"], 1)
    long_pieces = [l for l in lines if l.startswith("xxx")]
    self.assertEqual(sum(map(len, long_pieces)), 10 << 20)
    self.assertLessEqual(max(map(len, long_pieces)), corpus.MAX_SENTENCE_CHARS)

  def test_many_buckets_when_input_exceeds_bucket_size(self):
    path = self._file("raw.txt", "".join(f"句子{i}。\n" for i in range(2000)))
    manifest, out = self._prepare([path], num_shards=3, bucket_bytes=1000)
    self.assertEqual(manifest["sentences"], 2000)
    self.assertEqual(sorted(_shard_lines(out)),
                     sorted(f"句子{i}。" for i in range(2000)))

  def test_errors_leave_nothing_behind(self):
    good = self._file("good.txt", "一句。\n")
    out = os.path.join(self.dir, "out")
    with self.assertRaisesRegex(corpus.CorpusError, "input .*missing.txt.* does "
                                "not exist"):
      self._prepare([good, os.path.join(self.dir, "missing.txt")])
    corrupt = self._file("broken.txt.gz", b"\x1f\x8b\x08\x00garbage", mode="wb")
    with self.assertRaisesRegex(corpus.CorpusError,
                                "cannot read .*broken.txt.gz"):
      self._prepare([good, corrupt])
    with self.assertRaisesRegex(corpus.CorpusError, "no sentences found"):
      self._prepare([self._file("blank.txt", "\n \n\t\n")])
    self.assertFalse(os.path.exists(out))
    self.assertEqual(sorted(os.listdir(self.dir)),
                     ["blank.txt", "broken.txt.gz", "good.txt"])
    self._prepare([good])
    with self.assertRaises(FileExistsError):
      self._prepare([good])

  def test_cli(self):
    path = self._file("raw.txt", "一。二。三。\n")
    out = os.path.join(self.dir, "cli_out")
    cmd = [sys.executable, os.path.join(REPO, "bin", "prepare_corpus"),
           f"--input={path}", f"--output_dir={out}", "--num_shards=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(json.loads(proc.stdout)["sentences"], 3)
    proc = subprocess.run(cmd[:2] + [f"--input={path}.missing",
                                     f"--output_dir={out}x"],
                          capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 2)
    self.assertIn("does not exist", proc.stderr)
    self.assertFalse(os.path.exists(out + "x"))


if __name__ == "__main__":
  tf.test.main()
