"""Weight selection: a student initialised from a subset of its teacher's weights.

Xu et al., "Initializing Models with Larger Ones" (ICLR 2024): a smaller
Transformer starts from the weights of a larger pretrained one of the same
family, its layers a subset of the teacher's layers and every other dimension
a subset of the teacher's elements. DistilBERT's layer copy is the case of
equal width.

What is selected (every index list is increasing, so order is kept):
  layers     `first`: teacher layers 0..N-1; `uniform`: N evenly spaced
             layers, the first and the last included (`round(linspace)`).
  hidden     D_s of the teacher's D_t residual-stream elements, evenly spaced
             (`evenly_spaced`); the same indices in every tensor that reads or
             writes the residual stream: embeddings, every LayerNorm, the
             input side of Q/K/V and the FFN, the output side of the attention
             output and FFN output, the pooler.
  heads      H_s of the teacher's H_t heads, evenly spaced; inside each kept
             head d_s of its d_t elements, evenly spaced (all of them where the
             head sizes match: whole heads). The same indices on the output
             side of Q, K and V and the input side of the attention output, so
             that every student head is a (narrowed) teacher head.
  FFN        F_s of F_t intermediate units, evenly spaced (intermediate
             output, FFN output input).
  vocabulary the rows of the teacher tokenizer's ids (a teacher may embed
             more rows than it has tokens), or with a trimmed student
             vocabulary the rows of the kept teacher ids, in the student's
             order.
  positions  the first P_s usable rows: a RoBERTa-style teacher numbers real
             tokens from pad_token_id + 1, a student (BERT-style, as every
             student is) from 0.
  token types  the teacher's rows (the student takes its type_vocab_size).
  projection the embedding term's projection to the teacher's embedding: the
             teacher's Dense module (the identity where it has none) with
             its input columns at the selected hidden indices.
No rescaling is applied (as in the paper): a narrowed head's scores are
scaled by 1/sqrt(d_s) over d_s of the teacher's d_t products.

The student's activation is its own (`--model_type`): `roberta` keeps the
teacher's GELU, `ppminilm` is ReLU over GELU-trained weights.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tf_minilm import modeling
from tf_minilm import sentence_embedding

STRATEGIES = ("none", "first", "uniform")

# Axes of every tensor in HF (PyTorch) layout, by name suffix: Linear weights
# are [out, in].
_EMBEDDING_AXES = {
    "embeddings.word_embeddings.weight": ("vocab", "hidden"),
    "embeddings.position_embeddings.weight": ("position", "hidden"),
    "embeddings.token_type_embeddings.weight": ("token_type", "hidden"),
    "embeddings.LayerNorm.weight": ("hidden",),
    "embeddings.LayerNorm.bias": ("hidden",),
    "pooler.dense.weight": ("hidden", "hidden"),
    "pooler.dense.bias": ("hidden",),
}
_LAYER_AXES = {
    "attention.self.query.weight": ("attention", "hidden"),
    "attention.self.query.bias": ("attention",),
    "attention.self.key.weight": ("attention", "hidden"),
    "attention.self.key.bias": ("attention",),
    "attention.self.value.weight": ("attention", "hidden"),
    "attention.self.value.bias": ("attention",),
    "attention.output.dense.weight": ("hidden", "attention"),
    "attention.output.dense.bias": ("hidden",),
    "attention.output.LayerNorm.weight": ("hidden",),
    "attention.output.LayerNorm.bias": ("hidden",),
    "intermediate.dense.weight": ("ffn", "hidden"),
    "intermediate.dense.bias": ("ffn",),
    "output.dense.weight": ("hidden", "ffn"),
    "output.dense.bias": ("hidden",),
    "output.LayerNorm.weight": ("hidden",),
    "output.LayerNorm.bias": ("hidden",),
}


def evenly_spaced(total: int, count: int) -> np.ndarray:
  """`count` of `range(total)`, evenly spaced: every (total // count)-th where
  count divides total, else `round(linspace(0, total - 1, count))` (the
  paper's uniform element selection)."""
  if not 1 <= count <= total:
    raise ValueError(f"cannot select {count} of {total} elements")
  if total % count == 0:
    return np.arange(count) * (total // count)
  return np.round(np.linspace(0, total - 1, count)).astype(np.int64)


def selected_layers(strategy: str, teacher_layers: int,
                    student_layers: int) -> List[int]:
  """The teacher layer each student layer starts from."""
  if strategy == "first":
    return list(range(student_layers))
  if strategy == "uniform":
    return [int(i) for i in np.round(
        np.linspace(0, teacher_layers - 1, student_layers))]
  raise ValueError(f"unknown selection strategy {strategy!r}; expected one "
                   f"of {STRATEGIES[1:]}")


def check_fits(teacher: modeling.EncoderConfig,
               student: modeling.EncoderConfig) -> None:
  """Raises ValueError naming each dimension in which the student is larger
  than the teacher (weights cannot be selected from fewer)."""
  dimensions = [
      ("vocabulary", student.vocab_size, teacher.vocab_size),
      ("layers", student.num_layers, teacher.num_layers),
      ("hidden size", student.hidden_size, teacher.hidden_size),
      ("attention heads", student.num_heads, teacher.num_heads),
      ("head size", student.head_size, teacher.head_size),
      ("FFN size", student.intermediate_size, teacher.intermediate_size),
      ("positions", student.usable_positions, teacher.usable_positions),
      ("token types", student.type_vocab_size, teacher.type_vocab_size),
  ]
  larger = [f"{name} {ours} > the teacher's {theirs}"
            for name, ours, theirs in dimensions if ours > theirs]
  if larger:
    raise ValueError("the student is larger than its teacher in " +
                     "; ".join(larger) + " (weight selection picks the "
                     "student's weights among the teacher's)")


def _attention_indices(teacher: modeling.EncoderConfig,
                       student: modeling.EncoderConfig) -> np.ndarray:
  heads = evenly_spaced(teacher.num_heads, student.num_heads)
  within = evenly_spaced(teacher.head_size, student.head_size)
  return (heads[:, None] * teacher.head_size + within[None, :]).reshape(-1)


def select_tensors(tensors: Dict[str, np.ndarray],
                   teacher: modeling.EncoderConfig,
                   student: modeling.EncoderConfig, strategy: str,
                   vocab_ids: Optional[Sequence[int]] = None
                   ) -> Dict[str, np.ndarray]:
  """The student's tensors (HF names and layout) selected from the teacher's.

  Args:
    tensors: every weight of the teacher, by HF `BertModel` name (a pooler
      only if it has one).
    teacher, student: the architectures; `check_fits` must hold (resolve
      checks it before a run starts).
    strategy: "first" or "uniform" (layers; see the module docstring).
    vocab_ids: the teacher id of each student id (trimmed vocabulary); None:
      the teacher's first rows (its tokenizer's ids, which may be fewer than
      its embedding rows).
  """
  vocab_ids = np.asarray(np.arange(student.vocab_size) if vocab_ids is None
                         else vocab_ids, dtype=np.int64)
  if len(vocab_ids) != student.vocab_size:
    raise ValueError(f"{len(vocab_ids)} teacher ids for a student "
                     f"vocabulary of {student.vocab_size}")
  indices = {
      "vocab": vocab_ids,
      "position": teacher.position_offset + np.arange(
          student.usable_positions),
      "token_type": np.arange(student.type_vocab_size),
      "hidden": evenly_spaced(teacher.hidden_size, student.hidden_size),
      "attention": _attention_indices(teacher, student),
      "ffn": evenly_spaced(teacher.intermediate_size,
                           student.intermediate_size),
  }
  def take(value, axes):
    for axis, kind in enumerate(axes):
      value = np.take(value, indices[kind], axis=axis)
    return np.ascontiguousarray(value)

  selected = {}
  for name, axes in _EMBEDDING_AXES.items():
    if name in tensors and (student.with_pooler or
                            not name.startswith("pooler.")):
      selected[name] = take(tensors[name], axes)
  layers = selected_layers(strategy, teacher.num_layers, student.num_layers)
  for i, source in enumerate(layers):
    for suffix, axes in _LAYER_AXES.items():
      selected[f"encoder.layer.{i}.{suffix}"] = take(
          tensors[f"encoder.layer.{source}.{suffix}"], axes)
  return selected


def select_projection(head: sentence_embedding.SentenceHead,
                      teacher: modeling.EncoderConfig,
                      student: modeling.EncoderConfig
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """The initial `[E, D_s]` weight and `[E]` bias of a selected student's
  embedding projection: at the start the student's embedding is the
  teacher's head applied to the selected hidden elements (the others zero)."""
  hidden = evenly_spaced(teacher.hidden_size, student.hidden_size)
  if head.dense is None:
    weight = np.eye(teacher.hidden_size, dtype=np.float32)
    bias = np.zeros(teacher.hidden_size, np.float32)
  else:
    weight, bias = head.dense.weight, head.dense.bias
  return np.ascontiguousarray(np.take(weight, hidden, axis=1)), bias.copy()
