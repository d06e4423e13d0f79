"""What `resolve` reads from the files a distillation config names, and what
it refuses (in process: resolve starts no TensorFlow op and writes nothing)."""

import os

import tensorflow as tf

import hf_fixtures
from tf_minilm import config as config_lib
from tf_minilm import resolve


class ResolveTest(hf_fixtures.TinyModelTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.bert = cls.model_dir
    cls.xlmr = os.path.join(cls.root, "xlmr")
    hf_fixtures.xlmr_teacher_dir(cls.xlmr)
    cls.shards = os.path.join(cls.root, "shards")
    os.makedirs(cls.shards)
    with open(os.path.join(cls.shards, "part-0.txt"), "w") as f:
      f.write("hello world\n")
    cls.never = os.path.join(cls.root, "never_written")

  def config(self, **values):
    values = dict(dict(
        teacher_model_name_or_path=self.bert, input_dir=self.shards,
        output_dir=self.never, num_layers=2, teacher_layer_index=2,
        student_layer_index=1, num_relation_heads=3, max_seq_length=16,
        student_hidden_size=12, student_num_heads=3,
        student_intermediate_size=30), **values)
    return config_lib.DistillConfig(**values)

  def teacher_with_head(self, name, pooling):
    """A copy of the tiny teacher with a sentence-transformers head (the
    given pooling, Normalize)."""
    import shutil  # pylint: disable=g-import-not-at-top
    from tf_minilm import sentence_embedding  # pylint: disable=g-import-not-at-top
    teacher = os.path.join(self.root, name)
    shutil.copytree(self.bert, teacher)
    sentence_embedding.write_head(
        sentence_embedding.SentenceHead(pooling, normalize=True), teacher, 24,
        16)
    return teacher

  def refused(self, message, **values):
    with self.assertRaisesRegex(config_lib.ConfigError, message):
      config = self.config(**values)
      config_lib.validate(config)
      resolve.resolve(config)
    self.assertFalse(os.path.exists(self.never))

  def test_a_student_larger_than_its_teacher_is_refused_naming_the_flag(self):
    self.refused(r"--student_selection=uniform: the student is larger than "
                 r"its teacher in attention heads 6 > the teacher's 3",
                 student_selection="uniform", student_hidden_size=24,
                 student_num_heads=6)
    self.refused("--student_init continues", student_selection="first",
                 student_init=self.bert)

  def test_a_selected_student_takes_the_teachers_positions_and_types(self):
    random = resolve.resolve(self.config()).student
    self.assertEqual((random.max_position_embeddings, random.type_vocab_size),
                     (512, 2))
    selected = resolve.resolve(self.config(
        student_selection="uniform", teacher_model_name_or_path=self.xlmr,
        teacher_model_type="roberta")).student
    # XLM-R: 42 position rows, the first two before its real tokens; one
    # token type; LayerNorm epsilon 1e-12 as the tiny teacher's.
    self.assertEqual((selected.max_position_embeddings,
                      selected.type_vocab_size, selected.layer_norm_eps,
                      selected.pad_token_id, selected.position_style),
                     (40, 1, 1e-12, 1, "absolute"))

  def test_fewer_tokens_than_embedding_rows_are_accepted_more_refused(self):
    # multilingual-e5-small: 250,002 tokens, 250,037 rows. The student embeds
    # the tokens only.
    wide = os.path.join(self.root, "wide")
    hf_fixtures.make_hf_model(wide)
    hf_fixtures.edit_json(os.path.join(wide, "config.json"), vocab_size=104)
    with open(os.path.join(wide, "vocab.txt"), "w") as f:
      f.write("\n".join(hf_fixtures.tiny_vocab(99)) + "\n")
    # (The checkpoint's 99 rows do not matter here: resolve reads configs.)
    resolved = resolve.resolve(self.config(teacher_model_name_or_path=wide,
                                           student_selection="uniform"))
    self.assertEqual((resolved.teacher.vocab_size, resolved.student.vocab_size),
                     (104, 99))
    narrow = os.path.join(self.root, "narrow")
    hf_fixtures.make_hf_model(narrow)
    with open(os.path.join(narrow, "vocab.txt"), "w") as f:
      f.write("\n".join(hf_fixtures.tiny_vocab(104)) + "\n")
    self.refused("vocab.txt has 104 tokens but the teacher embeds only 99",
                 teacher_model_name_or_path=narrow)

  def test_roberta_positions_and_template_bound_max_seq_length(self):
    xlmr = dict(teacher_model_name_or_path=self.xlmr,
                teacher_model_type="roberta")
    self.refused(r"--max_seq_length=41: exceeds the 40 token positions "
                 r"\(max_position_embeddings 42, of which RoBERTa-style "
                 r"positions use those after the padding id 1\) the teacher "
                 r"embeds", max_seq_length=41, **xlmr)
    resolve.resolve(self.config(max_seq_length=40, **xlmr))
    self.refused(r"--max_seq_length=3: must be >= 4, the special tokens the "
                 r"teacher's tokenizer puts around a pair", max_seq_length=3,
                 **xlmr)
    self.refused(r"--max_seq_length=41: exceeds the 40 token positions "
                 r"\(max_position_embeddings 40\) the teacher embeds",
                 max_seq_length=41)


  def test_a_converted_teacher_keeps_its_head_or_refuses_the_term(self):
    # bin/convert_teacher carries a sentence-transformers head over when it
    # keeps every layer; below them the head (trained on the last layer's
    # states) is dropped, recorded, and the embedding term refused.
    from tf_minilm import convert  # pylint: disable=g-import-not-at-top
    from tf_minilm import sentence_embedding  # pylint: disable=g-import-not-at-top
    source = self.teacher_with_head("st_source", "mean")
    full = os.path.join(self.root, "converted_full")
    convert.convert_teacher(source, full)
    head = resolve.resolve(self.config(
        teacher_model_name_or_path=full, embedding_weight=0.5)).teacher_head
    self.assertEqual((head.pooling, head.dense, head.normalize),
                     ("mean", None, True))
    cut = os.path.join(self.root, "converted_cut")
    convert.convert_teacher(source, cut, num_layers=2)
    self.assertIsNone(sentence_embedding.read_head(cut, 24))
    self.assertEqual(convert.converted_source(cut)["num_layers"], 3)
    for pooling in ("auto", "mean"):
      with self.subTest(embedding_pooling=pooling):
        self.refused(
            f"--teacher_model_name_or_path={cut}: converted by "
            "bin/convert_teacher with 2 of the 3 layers of "
            f"{source}, whose sentence-transformers head pools the last "
            "layer's states; convert every layer for the embedding term",
            teacher_model_name_or_path=cut, embedding_weight=0.5,
            embedding_pooling=pooling, teacher_layer_index=1)
    resolve.resolve(self.config(teacher_model_name_or_path=cut,
                                teacher_layer_index=1))

  def test_the_embedding_terms_pooling_comes_from_the_teachers_files(self):
    teacher = self.teacher_with_head("st_teacher", "cls")
    head = resolve.resolve(self.config(
        teacher_model_name_or_path=teacher, embedding_weight=0.5)).teacher_head
    self.assertEqual((head.pooling, head.dense, head.normalize),
                     ("cls", None, True))
    self.refused("--embedding_pooling=mean: the teacher's sentence-"
                 "transformers files .* pool by cls; leave "
                 "--embedding_pooling=auto", teacher_model_name_or_path=teacher,
                 embedding_weight=0.5, embedding_pooling="mean")
    plain = resolve.resolve(self.config(embedding_weight=0.5,
                                        embedding_pooling="max"))
    self.assertEqual(plain.teacher_head.pooling, "max")
    self.assertIsNone(resolve.resolve(self.config()).teacher_head)


if __name__ == "__main__":
  tf.test.main()
