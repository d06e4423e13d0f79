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
    counts = manifest["counts"]
    self.assertEqual(counts["lines_with_invalid_utf8"], 1)
    self.assertEqual(counts["lines_with_nul"], 1)
    # The 10 MB line is one input line and one sentence, cut and reported.
    self.assertEqual(counts["input_lines"], 5)
    self.assertEqual(counts["sentences_cut_into_pieces"], 1)
    self.assertTrue(any("cut into pieces" in w for w in manifest["warnings"]))
    # 1 of 5 lines with bad bytes is over the 1% share: a warning too.
    self.assertTrue(any("invalid UTF-8" in w for w in manifest["warnings"]))
    long_pieces = [l for l in lines if l.startswith("xxx")]
    self.assertEqual(sum(map(len, long_pieces)), 10 << 20)
    self.assertLessEqual(max(map(len, long_pieces)), corpus.MAX_SENTENCE_CHARS)

  def test_long_json_record_and_overlong_lines_are_counted_truthfully(self):
    text = "长" * (3 << 20) + "。"
    path = self._file("big.jsonl", json.dumps({"text": text}, ensure_ascii=False)
                      + "\n" + json.dumps({"text": "短句。"}) + "\n")
    manifest, out = self._prepare([path], num_shards=1, json_field="text",
                                  split_sentences=False)
    self.assertEqual(manifest["counts"]["input_lines"], 2)
    self.assertNotIn("bad_json_lines", manifest["counts"])
    self.assertEqual(manifest["sentences"], 2 + (3 << 20) //
                     corpus.MAX_SENTENCE_CHARS)
    original = corpus.MAX_LINE_CHARS
    corpus.MAX_LINE_CHARS = 1 << 21
    try:
      manifest, out = self._prepare([path], num_shards=1, json_field="text",
                                    overwrite=True)
    finally:
      corpus.MAX_LINE_CHARS = original
    self.assertEqual(_shard_lines(out), ["短句。"])
    self.assertEqual(manifest["counts"]["input_lines"], 2)
    self.assertEqual(manifest["counts"]["overlong_lines_skipped"], 1)
    self.assertIn("1 line(s) longer than", " ".join(manifest["warnings"]))

  def test_binary_inputs_are_refused_and_gzip_is_recognised_by_content(self):
    import random  # pylint: disable=g-import-not-at-top
    noise = bytes(random.Random(0).randrange(256) for _ in range(20000))
    library = self._file("lib.so", b"\x7fELF\x02\x01" + b"\x00" * 5000 +
                         b"text. " * 100, mode="wb")
    image = self._file("image.png", b"\x89PNG\r\n\x1a\n" + noise, mode="wb")
    for path in (library, image):
      with self.assertRaisesRegex(corpus.CorpusError,
                                  f"input .*{os.path.basename(path)}.* is not "
                                  "UTF-8 text"):
        self._prepare([path])
    self.assertFalse(os.path.exists(os.path.join(self.dir, "out")))
    disguised = os.path.join(self.dir, "really_gzip.txt")
    with gzip.open(disguised, "wt", encoding="utf-8") as f:
      f.write("压缩的句子。另一句。\n")
    manifest, out = self._prepare([disguised], num_shards=1)
    self.assertEqual(sorted(_shard_lines(out)), sorted(["压缩的句子。", "另一句。"]))

  def test_output_that_is_contains_or_is_inside_an_input_is_refused(self):
    corp = os.path.join(self.dir, "corp")
    os.makedirs(corp)
    raw = os.path.join(corp, "raw")
    with open(raw, "w", encoding="utf-8") as f:
      f.write("原始语料。\n")
    cases = [([raw], corp, "contains"), ([corp], corp, "is the input"),
             ([corp], os.path.join(corp, "shards"), "is inside"),
             ([raw], raw, "is the input")]
    for inputs, output, relation in cases:
      with self.subTest(inputs=inputs, output=output):
        with self.assertRaisesRegex(corpus.CorpusError, relation):
          corpus.prepare(corpus.CorpusConfig(inputs=inputs, output_dir=output,
                                             overwrite=True, progress=False))
        with open(raw, encoding="utf-8") as f:
          self.assertEqual(f.read(), "原始语料。\n")
    self.assertEqual(os.listdir(corp), ["raw"])

  def test_hidden_staging_is_never_read_and_stale_staging_is_removed(self):
    from tf_minilm import io_utils  # pylint: disable=g-import-not-at-top
    corp = os.path.join(self.dir, "corp")
    os.makedirs(os.path.join(corp, ".out.tmp-x-1-abc", ".buckets"))
    with open(os.path.join(corp, ".out.tmp-x-1-abc", ".buckets", "000000"),
              "w", encoding="utf-8") as f:
      f.write("暂存的句子。\n")
    with open(os.path.join(corp, "raw.txt"), "w", encoding="utf-8") as f:
      f.write("真正的句子。\n")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    host = io_utils._HOST  # pylint: disable=protected-access
    stale = os.path.join(self.dir, f".out.tmp-{host}-{dead_pid}-k3j2")
    live = os.path.join(self.dir, f".out.tmp-{host}-{os.getpid()}-k3j2")
    other_host = os.path.join(self.dir, f".out.tmp-elsewhere-{dead_pid}-k3j2")
    for d in (stale, live, other_host):
      os.makedirs(os.path.join(d, ".buckets"))
    manifest, out = self._prepare([corp], num_shards=1)
    self.assertEqual(_shard_lines(out), ["真正的句子。"])
    self.assertEqual(manifest["sources"], [os.path.join(corp, "raw.txt")])
    self.assertFalse(os.path.exists(stale))
    self.assertTrue(os.path.exists(live))
    self.assertTrue(os.path.exists(other_host))

  def test_fewer_sentences_than_shards_names_the_real_shard_count(self):
    path = self._file("raw.txt", "一。二。三。\n")
    manifest, out = self._prepare([path], num_shards=10)
    files = sorted(n for n in os.listdir(out) if n.startswith("part-"))
    total = len(files)
    self.assertBetween(total, 1, 3)
    self.assertEqual(files, [f"part-{i:05d}-of-{total:05d}.txt"
                             for i in range(total)])
    self.assertEqual(sorted(_shard_lines(out)), ["一。", "三。", "二。"])
    self.assertIn(f"only {total} of --num_shards=10", manifest["warnings"][-1])

  def test_device_files_are_refused(self):
    with self.assertRaisesRegex(corpus.CorpusError,
                                "/dev/zero.* is not a regular file"):
      self._prepare(["/dev/zero"])

  def test_glob_matches_count_as_if_named(self):
    self._file("a.txt", "The first file has one sentence here.\n")
    sub = os.path.join(self.dir, "sub")
    os.makedirs(sub)
    with open(os.path.join(sub, "b.txt"), "w", encoding="utf-8") as f:
      f.write("A directory matched by the glob is read too.\n")
    manifest, _ = self._prepare([os.path.join(self.dir, "*")], num_shards=1)
    self.assertEqual(manifest["sentences"], 2)
    fifo = os.path.join(self.dir, "pipe")
    os.mkfifo(fifo)
    with self.assertRaisesRegex(corpus.CorpusError,
                                "pipe' is not a regular file"):
      self._prepare([os.path.join(self.dir, "*")], num_shards=1)

  def test_file_names_that_are_not_utf8_are_escaped_in_the_manifest(self):
    name = os.fsdecode(b"caf\xe9.txt")
    path = self._file(name, "A sentence from a Latin-1 named file.\n")
    manifest, out = self._prepare([path], num_shards=1)
    self.assertEqual(manifest["sources"], [path.encode(
        "utf-8", "surrogateescape").decode("utf-8", "backslashreplace")])
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
      self.assertIn("caf\\\\xe9.txt", f.read())

  def test_output_dir_that_is_a_file_or_a_foreign_directory_is_kept(self):
    good = self._file("good.txt", "一句。\n")
    target = self._file("precious.txt", "keep me\n")
    with self.assertRaisesRegex(corpus.CorpusError, "is not a directory"):
      corpus.prepare(corpus.CorpusConfig(inputs=[good], output_dir=target,
                                         overwrite=True, progress=False))
    foreign = os.path.join(self.dir, "home")
    os.makedirs(foreign)
    self._file(os.path.join("home", "thesis.tex"), "keep me too\n")
    with self.assertRaisesRegex(corpus.CorpusError, "not an output of "
                                "prepare_corpus"):
      corpus.prepare(corpus.CorpusConfig(inputs=[good], output_dir=foreign,
                                         overwrite=True, progress=False))
    with open(target, encoding="utf-8") as f:
      self.assertEqual(f.read(), "keep me\n")
    self.assertEqual(os.listdir(foreign), ["thesis.tex"])

  def test_open_file_limit_is_raised_or_named(self):
    path = self._file("raw.txt", "".join(f"句子{i}。\n" for i in range(3000)))
    script = (
        "import resource, sys; from tf_minilm import corpus\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, int(sys.argv[1])))\n"
        "try:\n"
        "  m = corpus.prepare(corpus.CorpusConfig(inputs=[sys.argv[2]], "
        "output_dir=sys.argv[3], num_shards=4, bucket_bytes=100, "
        "progress=False))\n"
        "  print('sentences', m['sentences'])\n"
        "except corpus.CorpusError as e:\n"
        "  print('error', e)\n")
    outputs = {}
    for hard in (100, 4096):
      proc = subprocess.run(
          [sys.executable, "-c", script, str(hard), path,
           os.path.join(self.dir, f"out_{hard}")], capture_output=True,
          text=True, timeout=300, cwd=REPO)
      self.assertEqual(proc.returncode, 0, proc.stderr)
      outputs[hard] = proc.stdout
    self.assertIn("`ulimit -n` allows 100", outputs[100])
    self.assertIn("sentences 3000", outputs[4096])

  def test_disk_full_is_named_and_leaves_nothing(self):
    import disk_fixtures  # pylint: disable=g-import-not-at-top
    path = self._file("raw.txt", "".join(f"第{i}个很长的句子。\n"
                                         for i in range(100_000)))
    with disk_fixtures.tiny_filesystem("1m") as small:
      out = os.path.join(small, "shards")
      with self.assertRaisesRegex(corpus.CorpusError,
                                  f"no space left on {small}"):
        corpus.prepare(corpus.CorpusConfig(inputs=[path], output_dir=out,
                                           progress=False))
      self.assertEqual(os.listdir(small), [])

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
    with self.assertRaisesRegex(corpus.CorpusError, "already exists; pass "
                                "--overwrite"):
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
