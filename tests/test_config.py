"""Flags, flagfiles, the learning-rate schedule and AdamW."""

import glob
import os

from absl import flags
import keras
import numpy as np
import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import optimization

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(*argv):
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values)
  flag_values(["distill"] + list(argv))
  return {name: flag_values[name].value
          for name in config_lib.DistillConfig.__dataclass_fields__}


class FlagsTest(tf.test.TestCase):

  def test_every_config_field_is_a_flag_and_every_flagfile_parses(self):
    files = sorted(glob.glob(os.path.join(REPO, "configs", "*.flags")))
    self.assertLen(files, 7)
    for path in files:
      if os.path.basename(path).startswith("finetune"):
        continue
      with self.subTest(path=os.path.basename(path)):
        values = parse(f"--flagfile={path}")
        # The paths a user adds on the command line (make demo passes the
        # teacher); every combination the file sets must then validate.
        for name in ("teacher_model_name_or_path", "input_dir", "output_dir"):
          values[name] = values[name] or f"/given/{name}"
        config_lib.validate(config_lib.DistillConfig(**values))

  def test_the_finetune_flagfile_validates(self):
    flag_values = flags.FlagValues()
    config_lib.define_finetune_flags(flag_values)
    flag_values(["finetune", f"--flagfile={REPO}/configs/finetune_clue.flags",
                 "--model_name_or_path=/given/model", "--output_dir=/given/out",
                 "--task=afqmc", "--data_dir=/given/data"])
    values = {name: flag_values[name].value
              for name in config_lib.FinetuneConfig.__dataclass_fields__}
    config_lib.validate_finetune(config_lib.FinetuneConfig(**values))

  def test_finetune_flagfile_is_the_recipes_search(self):
    flag_values = flags.FlagValues()
    config_lib.define_finetune_flags(flag_values)
    flag_values(["finetune", f"--flagfile={REPO}/configs/finetune_clue.flags",
                 "--model_name_or_path=m", "--output_dir=o", "--task=tnews",
                 "--data_dir=d"])
    config = config_lib.finetune_from_flags(flag_values)
    self.assertLen(config.grid(), 12)
    self.assertEqual(config.grid()[0], (1e-5, 16))
    self.assertEqual((config.epochs, config.max_seq_length, config.use_pooler),
                     (3, 128, True))

  def test_the_selected_recipe_is_the_recipe_started_from_its_teacher(self):
    recipe = parse(f"--flagfile={REPO}/configs/pp_minilm_6l768h.flags")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
      selected = parse("--flagfile=configs/pp_minilm_6l768h_selected.flags")
    finally:
      os.chdir(cwd)
    changed = {k: (recipe[k], v) for k, v in selected.items()
               if recipe[k] != v}
    self.assertEqual(changed, {
        "student_selection": ("none", "uniform"),
        "output_dir": ("runs/pp_minilm_6l768h",
                       "runs/pp_minilm_6l768h_selected")})

  def test_recipe_flagfile_is_the_published_recipe(self):
    values = parse(f"--flagfile={REPO}/configs/pp_minilm_6l768h.flags")
    want = dict(model_type="ppminilm", num_layers=6, teacher_layer_index=19,
                student_layer_index=5, num_relation_heads=64, alpha=0.0,
                beta=1.0, max_seq_length=128, batch_size=128,
                learning_rate=6e-4, weight_decay=0.01, adam_epsilon=1e-8,
                max_grad_norm=1.0, warmup_steps=4000, max_steps=400_000,
                use_amp=True, amp_dtype="float16", padding="longest",
                relation_mask="reference", dropout=0.1,
                reference_char_cut=True)
    self.assertEqual({k: values[k] for k in want}, want)

  def test_command_line_overrides_the_flagfile(self):
    values = parse(f"--flagfile={REPO}/configs/pp_minilm_6l768h.flags",
                   "--batch_size=32", "--beta=0.5")
    self.assertEqual((values["batch_size"], values["beta"]), (32, 0.5))


class ScheduleAndOptimizerTest(tf.test.TestCase):

  def test_warmup_then_linear_decay_to_zero(self):
    schedule = optimization.WarmupLinearDecay(6e-4, 4000, 400_000)
    for step, want in ((0, 0.0), (2000, 3e-4), (4000, 6e-4), (202_000, 3e-4),
                       (400_000, 0.0), (500_000, 0.0)):
      self.assertAllClose(schedule(step), want, rtol=1e-6, atol=1e-12)

  def test_adamw_matches_paddle_formula(self):
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=(3, 5)).astype(np.float32),
                            name="kernel")
    bias = keras.Variable(rng.normal(size=(5,)).astype(np.float32), name="bias")
    schedule = optimization.WarmupLinearDecay(1e-2, 2, 10)
    optimizer = optimization.AdamW([kernel, bias], weight_decay=0.1)
    want = [kernel.numpy().astype(np.float64), bias.numpy().astype(np.float64)]
    m = [np.zeros_like(w) for w in want]
    v = [np.zeros_like(w) for w in want]
    for t in range(1, 5):
      grads = [rng.normal(size=w.shape) for w in want]
      optimizer.apply([tf.constant(g, tf.float32) for g in grads],
                      schedule(t - 1))
      lr = 1e-2 * min((t - 1) / 2, (10 - (t - 1)) / 8)
      for i, decay in enumerate((True, False)):
        if decay:
          want[i] = want[i] - lr * 0.1 * want[i]
        m[i] = 0.9 * m[i] + 0.1 * grads[i]
        v[i] = 0.999 * v[i] + 0.001 * grads[i] ** 2
        c2 = np.sqrt(1 - 0.999 ** t)
        want[i] = want[i] - lr * c2 / (1 - 0.9 ** t) * m[i] / (
            np.sqrt(v[i]) + 1e-8 * c2)
    self.assertAllClose(kernel, want[0], atol=1e-6)
    self.assertAllClose(bias, want[1], atol=1e-6)
    self.assertEqual(optimizer.decayed_variable_names([kernel, bias]),
                     ["kernel"])


if __name__ == "__main__":
  tf.test.main()
