"""Inputs that break tokenizers, beside the multilingual text of
sample_data.multilingual_lines."""

# Inputs where the tokenizers' rules are easy to get wrong: whitespace runs
# and odd spaces, characters normalized into spaces or deleted, composed and
# decomposed marks (grapheme clusters under and over 6 bytes), half-width
# kana, emoji sequences, unknown characters, long words.
EDGE_CASES = [
    "", " ", "   ", "  a  ", "hello ", " hello", "a  b", "x\ty\nz", "a\r\nb",
    "\u2581a \u2581", "ok\u200bok", "zero\u200dwidth\ufeff", "a\x01b\x7f",
    "na\u00efve caf\u00e9", "nai\u0308ve cafe\u0301", "A\u0302\u0300 x",
    "\uff21\u0301", "\n\u0301", " \u0301x", "e\u0301\u0323 e\u0323\u0301",
    "a\u0301\u0301\u0301", "\u0b95\u0bc6\u0bbe\u0bae", "\u0b95\u0bca",
    "\u09a6\u09c7\u09be", "\uff76\uff9e\uff77\uff9e \uff8a\uff9f",
    "\u304b\u3099 \u304c", "\u1100\u1161\u11a8 \uac01", "\u00a8\u00b4\u00b8",
    "\ufdfa \ufdfb", "\uff21\uff42\uff43\uff11\uff12\uff13\u3000\uff01",
    "\U0001f600\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d"
    "\U0001f467 \U0001f1eb\U0001f1f7", "\U00013000\U00013001 x",
    "\u2034\u2034", "\u00bd \u2460 \u33a1 \ufb01", "word" * 40,
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629\u064e \u0661\u0662",
]
