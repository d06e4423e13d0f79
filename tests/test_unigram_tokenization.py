"""SentencePiece (Unigram) tokenization against transformers' fast tokenizer,
on the real XLM-R tokenizer.json and multilingual text."""

import collections
import copy
import json
import os
import shutil

import tensorflow as tf

import hf_fixtures
import multilingual_text
from tf_minilm import sample_data
from tf_minilm import text_encoding
from tf_minilm import tokenization
from tf_minilm import unigram_tokenization


def _hf_tokenizer(path):
  import transformers  # pylint: disable=g-import-not-at-top
  return transformers.PreTrainedTokenizerFast(tokenizer_file=path)


class XlmrParityTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.path = hf_fixtures.xlmr_tokenizer_json()
    with open(cls.path, encoding="utf-8") as f:
      cls.spec = json.load(f)
    cls.settings = tokenization.read_tokenizer_json(cls.path)
    cls.hf = _hf_tokenizer(cls.path)

  def setUp(self):
    super().setUp()
    # SentencePiece's op holds a resource, which tf.test.TestCase does not
    # keep from one test to the next.
    self.tokenizer = self.settings.tokenizer()

  def test_settings_of_the_real_file(self):
    s = self.settings
    self.assertIsInstance(s, unigram_tokenization.UnigramSettings)
    self.assertLen(s.pieces, 250002)
    self.assertEqual((s.pad_id, s.unk_id), (1, 3))
    self.assertEqual(s.whitespace, "collapse")
    self.assertEqual(self.tokenizer.num_special_tokens(False), 2)
    self.assertEqual(self.tokenizer.num_special_tokens(True), 4)

  def test_ids_equal_transformers_per_script(self):
    self._check_per_script(self.tokenizer, self.hf)

  def test_ids_equal_xlm_roberta_tokenizer_per_script(self):
    # transformers' XLMRobertaTokenizer (the class of XLM-R models) keeps the
    # file's pieces and charsmap but splits on whitespace itself.
    import transformers  # pylint: disable=g-import-not-at-top
    directory = os.path.join(self.get_temp_dir(), "xlmr_class")
    os.makedirs(directory, exist_ok=True)
    shutil.copyfile(self.path, os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
      json.dump({"tokenizer_class": "XLMRobertaTokenizer"}, f)
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    self.assertEqual(type(hf).__name__, "XLMRobertaTokenizer")
    settings = tokenization.read_tokenizer(directory)
    self.assertEqual(settings.whitespace, "split")
    self._check_per_script(settings.tokenizer(), hf)
    # Its own exports say which class reads them.
    config = json.loads(settings.hf_files(512)["tokenizer_config.json"])
    self.assertEqual(config["tokenizer_class"], "XLMRobertaTokenizer")

  def test_the_class_named_in_config_json_or_as_the_file_is(self):
    # config.json's tokenizer_class counts where tokenizer_config.json is
    # absent; PreTrainedTokenizerFast reads the file as it is.
    import transformers  # pylint: disable=g-import-not-at-top
    texts = ["trail  ", "  two  spaces  ", "a\u3000b"]
    for name, config, tokenizer_config, whitespace in (
        ("class_in_config", {"model_type": "bert",
                             "tokenizer_class": "XLMRobertaTokenizer"}, None,
         "split"),
        ("file_as_is", None, {"tokenizer_class": "PreTrainedTokenizerFast"},
         "collapse")):
      with self.subTest(name):
        directory = os.path.join(self.get_temp_dir(), name)
        os.makedirs(directory, exist_ok=True)
        shutil.copyfile(self.path, os.path.join(directory, "tokenizer.json"))
        for filename, content in (("config.json", config),
                                  ("tokenizer_config.json", tokenizer_config)):
          if content is not None:
            with open(os.path.join(directory, filename), "w") as f:
              json.dump(content, f)
        settings = tokenization.read_tokenizer(directory)
        self.assertEqual(settings.whitespace, whitespace)
        hf = transformers.AutoTokenizer.from_pretrained(directory)
        got = settings.tokenizer().tokenize(tf.constant(texts)).to_list()
        self.assertEqual(got, [hf(t, add_special_tokens=False)["input_ids"]
                               for t in texts])

  def _check_per_script(self, tokenizer, hf):
    corpus = sample_data.multilingual_lines(per_locale=40)
    corpus["edge cases"] = multilingual_text.EDGE_CASES
    report = collections.OrderedDict()
    for locale, texts in corpus.items():
      got = tokenizer.tokenize(tf.constant(texts)).to_list()
      want = [hf(t, add_special_tokens=False)["input_ids"] for t in texts]
      differ = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
      report[sample_data.LOCALES.get(locale, locale)] = (
          len(texts), len(differ))
      self.assertEmpty(differ, msg=f"{locale}: {differ[:3]}")
    print(f"\n{type(hf).__name__}: lines identical / lines, per script: " +
          "; ".join(f"{name} {n - bad}/{n}"
                    for name, (n, bad) in report.items()))

  def test_the_normalizer_as_the_tokenizers_library_applies_it(self):
    # Per grapheme cluster: under 6 bytes the shortest rule maps the whole
    # cluster (so marks are dropped); otherwise character by character (so
    # decomposed Tamil vowel signs stay decomposed).
    import tokenizers  # pylint: disable=g-import-not-at-top
    normalizer = tokenizers.Tokenizer.from_file(self.path).normalizer
    texts = ["A\u0302\u0300", "\uff21\u0301", "\u0b95\u0bc6\u0bbe",
             "\uff76\uff9e", "e\u0301", "\u00a8x", "a\u3000\u3000b"]
    got = self.tokenizer.normalize(tf.constant(texts)).numpy()
    for text, value in zip(texts, got):
      self.assertEqual(value.decode("utf-8"),
                       " " + normalizer.normalize_str(text).lstrip(" "),
                       msg=repr(text))
    self.assertEqual(normalizer.normalize_str("A\u0302\u0300"), "\u00c2")

  def test_truncation_and_pairs_through_the_text_encoder(self):
    texts = [t for lines in
             sample_data.multilingual_lines(per_locale=4).values()
             for t in lines]
    for max_length in (4, 9, 64):
      encoder = text_encoding.TextEncoder(self.tokenizer, max_length)
      got = encoder.encode(tf.constant(texts))
      for i, text in enumerate(texts):
        want = self.hf(text, truncation=True, max_length=max_length)
        length = len(want["input_ids"])
        self.assertEqual(got["token_ids"][i, :length].numpy().tolist(),
                         want["input_ids"], msg=(max_length, text))
        self.assertAllEqual(got["padding_mask"][i],
                            [True] * length + [False] * (
                                got["padding_mask"].shape[1] - length))
        self.assertAllEqual(got["token_ids"][i, length:], tf.fill(
            [got["token_ids"].shape[1] - length], 1))
      pairs = list(zip(texts[::2], texts[1::2]))
      got = encoder.encode_pairs(tf.constant([a for a, _ in pairs]),
                                 tf.constant([b for _, b in pairs]))
      for i, (a, b) in enumerate(pairs):
        want = self.hf(a, b, truncation="longest_first",
                       max_length=max_length, return_token_type_ids=True)
        length = len(want["input_ids"])
        self.assertEqual(got["token_ids"][i, :length].numpy().tolist(),
                         want["input_ids"], msg=(max_length, a, b))
        self.assertEqual(got["segment_ids"][i, :length].numpy().tolist(),
                         want["token_type_ids"])

  def test_template_segment_ids_of_single_texts_and_pairs(self):
    # A TemplateProcessing that gives single texts segment 1 after <s>:
    # the encoder must not assume single texts are all segment 0.
    spec = copy.deepcopy(self.spec)

    def item(kind, name, segment):
      return {kind: {"id": name, "type_id": segment}}
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [item("SpecialToken", "<s>", 0), item("Sequence", "A", 1),
                   item("SpecialToken", "</s>", 1)],
        "pair": [item("SpecialToken", "<s>", 0), item("Sequence", "A", 0),
                 item("SpecialToken", "</s>", 0), item("Sequence", "B", 1),
                 item("SpecialToken", "</s>", 1)],
        "special_tokens": {name: {"id": name, "ids": [index],
                                  "tokens": [name]}
                           for name, index in (("<s>", 0), ("</s>", 2))}}
    path = os.path.join(self.get_temp_dir(), "template", "tokenizer.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(spec, f)
    import transformers  # pylint: disable=g-import-not-at-top
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=path,
                                              pad_token="<pad>")
    encoder = text_encoding.TextEncoder(
        tokenization.read_tokenizer_json(path).tokenizer(), 12)
    texts = ["Ein Satz, der länger ist als zwölf Stücke.", "短い", "b"]
    for got, want in (
        (encoder.encode(tf.constant(texts)),
         hf(texts, truncation=True, max_length=12, padding="longest",
            return_token_type_ids=True)),
        (encoder.encode_pairs(tf.constant(texts), tf.constant(texts[::-1])),
         hf(texts, texts[::-1], truncation="longest_first", max_length=12,
            padding="longest", return_token_type_ids=True))):
      self.assertAllEqual(got["token_ids"], want["input_ids"])
      self.assertAllEqual(got["padding_mask"],
                          tf.cast(want["attention_mask"], tf.bool))
      self.assertAllEqual(got["segment_ids"], want["token_type_ids"])
      self.assertTrue((got["segment_ids"].numpy() == 1).any())

  def test_unsupported_files_are_refused_by_name(self):
    def edited(change):
      spec = copy.deepcopy(self.spec)
      change(spec)
      path = os.path.join(self.get_temp_dir(), "tokenizer.json")
      with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
      return path
    cases = {
        "byte_fallback": lambda s: s["model"].update(byte_fallback=True),
        "<pad>": lambda s: s["model"]["vocab"].__setitem__(1, ["<x>", 0.0]),
        "normalizer must be Precompiled": lambda s: s.update(
            normalizer={"type": "NFKC"}),
        "pre-tokenizer must be Metaspace": lambda s: s.update(
            pre_tokenizer={"type": "Whitespace"}),
        "post_processor": lambda s: s.update(post_processor=None),
        "not BPE": lambda s: s["model"].update(type="BPE"),
        "unk_id": lambda s: s["model"].update(unk_id=250002),
    }
    for message, change in cases.items():
      with self.subTest(message):
        path = edited(change)
        with self.assertRaisesRegex(tokenization.TokenizerError,
                                    f"{path}: .*{message}"):
          tokenization.read_tokenizer_json(path)


if __name__ == "__main__":
  tf.test.main()
