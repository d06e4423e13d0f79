"""Weight selection: index rules, students equal to their teacher where they
have its shape, the selected elements of a narrower student, refusals."""

import os

import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import convert
from tf_minilm import modeling
from tf_minilm import selection

ATOL = 1e-5


def _selected_student(teacher_dir, student_config, strategy, vocab_ids=None):
  teacher = convert.load_encoder(teacher_dir, with_pooler=None)
  student = modeling.Encoder(student_config, name="student")
  tensors = selection.select_tensors(convert.encoder_tensors(teacher),
                                     teacher.config, student_config, strategy,
                                     vocab_ids)
  convert.assign_hf_weights(student, tensors, "selected")
  return student, tensors


class IndexRuleTest(tf.test.TestCase):

  def test_layers(self):
    self.assertEqual(selection.selected_layers("uniform", 6, 4), [0, 2, 3, 5])
    self.assertEqual(selection.selected_layers("uniform", 24, 6),
                     [0, 5, 9, 14, 18, 23])
    self.assertEqual(selection.selected_layers("uniform", 3, 3), [0, 1, 2])
    self.assertEqual(selection.selected_layers("first", 24, 6),
                     [0, 1, 2, 3, 4, 5])
    with self.assertRaisesRegex(ValueError, "unknown selection"):
      selection.selected_layers("none", 6, 4)

  def test_elements(self):
    self.assertAllEqual(selection.evenly_spaced(24, 12), np.arange(12) * 2)
    self.assertAllEqual(selection.evenly_spaced(8, 6), [0, 1, 3, 4, 6, 7])
    self.assertAllEqual(selection.evenly_spaced(5, 5), np.arange(5))
    for total, count in ((1024, 768), (384, 256), (37, 17), (4096, 3072)):
      chosen = selection.evenly_spaced(total, count)
      self.assertLen(set(chosen.tolist()), count)
      self.assertEqual((chosen[0], chosen[-1] < total), (0, True))
      self.assertTrue(np.all(np.diff(chosen) > 0))
    with self.assertRaisesRegex(ValueError, "cannot select 7 of 5"):
      selection.evenly_spaced(5, 7)


class SelectedStudentTest(hf_fixtures.TinyModelTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.bert_dir, cls.bert = cls.model_dir, cls.hf_model
    cls.bert_config = convert.read_encoder_config(cls.bert_dir)

  def test_the_teachers_own_shape_reproduces_the_teacher(self):
    ids, mask = hf_fixtures.padded_batch()
    want = hf_fixtures.hf_reference_outputs(self.bert, ids, mask)
    for strategy in ("first", "uniform"):
      student, _ = _selected_student(self.bert_dir, self.bert_config, strategy)
      got = student.model(hf_fixtures.encoder_inputs(ids, mask))
      for name in ("sequence_output", "pooled_output"):
        self.assertAllClose(got[name], want[name], atol=ATOL, rtol=0,
                            msg=f"{strategy}: {name}")

  def test_a_roberta_teacher_is_reproduced_by_a_bert_style_student(self):
    # RoBERTa positions count real tokens from pad_id + 1, the student's from
    # 0: the student's rows are the teacher's shifted; one token type.
    d = os.path.join(self.root, "xlmr")
    model = hf_fixtures.make_hf_model(d, model_type="xlm-roberta")
    teacher = convert.read_encoder_config(d)
    student_config = teacher.replace(
        position_style="absolute",
        max_position_embeddings=teacher.usable_positions)
    self.assertEqual(student_config.max_position_embeddings, 40)
    student, _ = _selected_student(d, student_config, "uniform")
    ids, mask = hf_fixtures.padded_batch(pad_id=1)
    want = hf_fixtures.hf_reference_outputs(model, ids, mask)
    got = student.model(hf_fixtures.encoder_inputs(ids, mask))
    real = mask[..., None]
    self.assertAllClose(np.where(real, got["sequence_output"], 0),
                        np.where(real, want["sequence_output"], 0),
                        atol=ATOL, rtol=0)

  def test_first_at_full_width_equals_the_truncated_teacher(self):
    truncated = convert.load_hf_encoder(self.bert_dir, num_layers=2,
                                        with_pooler=False)
    student, _ = _selected_student(
        self.bert_dir, self.bert_config.replace(num_layers=2,
                                                with_pooler=False), "first")
    want = convert.encoder_tensors(truncated)
    got = convert.encoder_tensors(student)
    self.assertEqual(sorted(got), sorted(want))
    for name, value in want.items():
      self.assertAllEqual(got[name], value, msg=name)

  def test_a_narrower_student_takes_these_elements(self):
    # Teacher: 3 layers, hidden 24, 3 heads of 8, FFN 37. Student: 2 layers,
    # hidden 12, 2 heads of 6, FFN 17. Indices written out by hand.
    student_config = modeling.EncoderConfig(
        vocab_size=5, hidden_size=12, num_layers=2, num_heads=2,
        intermediate_size=17, hidden_act="relu", max_position_embeddings=30)
    vocab_ids = [0, 1, 2, 3, 50]
    _, got = _selected_student(self.bert_dir, student_config, "uniform",
                               vocab_ids)
    teacher = {k: v.detach().numpy() for k, v in self.bert.state_dict().items()}
    hidden = np.arange(0, 24, 2)
    heads = [0, 1, 3, 4, 6, 7, 16, 17, 19, 20, 22, 23]
    ffn = np.round(np.linspace(0, 36, 17)).astype(int)
    self.assertAllEqual(got["embeddings.word_embeddings.weight"],
                        teacher["embeddings.word_embeddings.weight"][
                            np.ix_(vocab_ids, hidden)])
    self.assertAllEqual(got["embeddings.position_embeddings.weight"],
                        teacher["embeddings.position_embeddings.weight"][
                            :30][:, hidden])
    self.assertAllEqual(got["embeddings.LayerNorm.weight"],
                        teacher["embeddings.LayerNorm.weight"][hidden])
    self.assertAllEqual(got["pooler.dense.weight"],
                        teacher["pooler.dense.weight"][np.ix_(hidden, hidden)])
    # Uniform: student layer 1 is teacher layer 2.
    t, s = "encoder.layer.2.", "encoder.layer.1."
    for name in ("query", "key", "value"):
      self.assertAllEqual(got[f"{s}attention.self.{name}.weight"],
                          teacher[f"{t}attention.self.{name}.weight"][
                              np.ix_(heads, hidden)])
      self.assertAllEqual(got[f"{s}attention.self.{name}.bias"],
                          teacher[f"{t}attention.self.{name}.bias"][heads])
    self.assertAllEqual(got[f"{s}attention.output.dense.weight"],
                        teacher[f"{t}attention.output.dense.weight"][
                            np.ix_(hidden, heads)])
    self.assertAllEqual(got[f"{s}intermediate.dense.weight"],
                        teacher[f"{t}intermediate.dense.weight"][
                            np.ix_(ffn, hidden)])
    self.assertAllEqual(got[f"{s}output.dense.weight"],
                        teacher[f"{t}output.dense.weight"][
                            np.ix_(hidden, ffn)])
    self.assertAllEqual(got[f"{s}output.LayerNorm.bias"],
                        teacher[f"{t}output.LayerNorm.bias"][hidden])
    self.assertAllEqual(got["encoder.layer.0.attention.self.key.bias"],
                        teacher["encoder.layer.0.attention.self.key.bias"][
                            heads])

  def test_a_teacher_with_more_rows_than_tokens_gives_its_first_rows(self):
    student_config = self.bert_config.replace(vocab_size=90)
    _, got = _selected_student(self.bert_dir, student_config, "first")
    self.assertAllEqual(
        got["embeddings.word_embeddings.weight"],
        self.bert.state_dict()["embeddings.word_embeddings.weight"][:90])

  def test_whole_heads_where_the_head_size_matches(self):
    # The recipe's case in small: 8 heads of 4 -> 6 heads of 4.
    d = os.path.join(self.root, "eight_heads")
    hf_fixtures.make_hf_model(d, hidden_size=32, num_attention_heads=8)
    student_config = modeling.EncoderConfig(
        vocab_size=99, hidden_size=24, num_layers=2, num_heads=6,
        intermediate_size=20, max_position_embeddings=40)
    teacher = convert.load_encoder(d)
    _, got = _selected_student(d, student_config, "uniform")
    query = convert.encoder_tensors(teacher)[
        "encoder.layer.2.attention.self.query.bias"]
    kept = got["encoder.layer.1.attention.self.query.bias"].reshape(6, 4)
    chosen = [round(h) for h in np.linspace(0, 7, 6)]
    self.assertAllEqual(kept, query.reshape(8, 4)[chosen])

  def test_a_student_larger_in_any_dimension_is_refused(self):
    small = self.bert_config
    for change, named in ((dict(num_layers=4), "layers 4 > the teacher's 3"),
                          (dict(num_heads=4), "attention heads 4"),
                          (dict(hidden_size=12, num_heads=1),
                           "head size 12 > the teacher's 8"),
                          (dict(intermediate_size=40), "FFN size 40"),
                          (dict(max_position_embeddings=41), "positions 41"),
                          (dict(hidden_size=30, num_heads=3),
                           "hidden size 30")):
      with self.assertRaisesRegex(ValueError, named):
        selection.check_fits(small, small.replace(**change))



class ProjectionSelectionTest(tf.test.TestCase):

  def test_the_teachers_dense_or_identity_at_the_selected_columns(self):
    from tf_minilm import sentence_embedding  # pylint: disable=g-import-not-at-top
    teacher = modeling.EncoderConfig(vocab_size=9, hidden_size=6, num_layers=2,
                                     num_heads=2, intermediate_size=8)
    student = teacher.replace(hidden_size=4)  # hidden elements 0, 2, 3, 5
    weight, bias = selection.select_projection(
        sentence_embedding.SentenceHead("mean"), teacher, student)
    self.assertAllEqual(weight, np.eye(6)[:, [0, 2, 3, 5]])
    self.assertAllEqual(bias, np.zeros(6))
    dense = sentence_embedding.Dense(
        np.arange(30, dtype=np.float32).reshape(5, 6),
        np.arange(5, dtype=np.float32), "tanh")
    weight, bias = selection.select_projection(
        sentence_embedding.SentenceHead("cls", dense), teacher, student)
    self.assertAllEqual(weight, dense.weight[:, [0, 2, 3, 5]])
    self.assertAllEqual(bias, dense.bias)


if __name__ == "__main__":
  tf.test.main()
