"""Input digests and the resume check (in process, on files made here)."""

import json
import os
import shutil
import tempfile

import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import resume


def _write(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


class DigestTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp(prefix="resume_test_")
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

  def test_a_replaced_large_checkpoint_of_the_same_size_differs(self):
    # Past FULLY_HASHED_BYTES only samples are read; another checkpoint of
    # the same shape differs in all of them.
    size = resume.FULLY_HASHED_BYTES + 3 * resume.SAMPLE_BYTES + 12345
    path = os.path.join(self.root, "teacher", "model.safetensors")
    _write(path, os.urandom(size))
    before = resume.path_digest(os.path.dirname(path), self.root + "/out")
    _write(path, os.urandom(size))
    self.assertNotEqual(
        resume.path_digest(os.path.dirname(path), self.root + "/out"), before)

  def test_an_in_place_edit_of_a_shard_differs(self):
    shard = os.path.join(self.root, "corpus", "part-00000.txt")
    lines = [f"line {i} of the corpus\n".encode() for i in range(80_000)]
    _write(shard, b"".join(lines))
    self.assertGreater(os.path.getsize(shard), 1_600_000)
    before = resume.path_digest(os.path.dirname(shard), self.root + "/out")
    with open(shard, "r+b") as f:
      f.seek(800_000)
      byte = f.read(1)
      f.seek(800_000)
      f.write(b"X" if byte != b"X" else b"Y")
    self.assertNotEqual(
        resume.path_digest(os.path.dirname(shard), self.root + "/out"),
        before)

  def test_a_copied_or_moved_input_keeps_its_digest(self):
    corpus = os.path.join(self.root, "corpus")
    _write(os.path.join(corpus, "a.txt"), b"one\n")
    _write(os.path.join(corpus, "sub", "b.txt"),
           os.urandom(resume.FULLY_HASHED_BYTES + 1))
    # Hidden files and the run's own directory inside the input do not count.
    out = os.path.join(corpus, "run")
    before = resume.path_digest(corpus, out)
    _write(os.path.join(corpus, ".hidden"), b"x")
    _write(os.path.join(out, "checkpoint"), b"y")
    self.assertEqual(resume.path_digest(corpus, out), before)
    copy = os.path.join(self.root, "copy")
    shutil.copytree(corpus, copy)
    self.assertEqual(resume.path_digest(copy, os.path.join(copy, "run")),
                     before)
    self.assertIsNone(resume.path_digest(os.path.join(self.root, "missing"),
                                         out))


class ResumableTest(tf.test.TestCase):

  def test_inputs_by_digest_and_older_runs_by_path(self):
    root = tempfile.mkdtemp(prefix="resumable_test_")
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    corpus = os.path.join(root, "corpus")
    _write(os.path.join(corpus, "part-0.txt"), b"hello\n")
    config = config_lib.DistillConfig(
        teacher_model_name_or_path=corpus, input_dir=corpus,
        output_dir=os.path.join(root, "run"))
    stored = resume.stored_json(config)
    self.assertEqual(config_lib.DistillConfig.from_json(stored, "stored"),
                     config)
    resume.check_resumable(config, stored, "stored.json", ())
    _write(os.path.join(corpus, "part-0.txt"), b"hullo\n")
    with self.assertRaisesRegex(config_lib.ConfigError,
                                "its contents changed since the run started"):
      resume.check_resumable(config, stored, "stored.json", ())
    # A config stored before digests sampled large files: by path.
    older = json.loads(stored)
    older["input_identities"] = older.pop(resume.DIGESTS_KEY)
    resume.check_resumable(config, json.dumps(older), "stored.json", ())


if __name__ == "__main__":
  tf.test.main()
