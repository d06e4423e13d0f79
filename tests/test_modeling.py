"""Tests of the Keras encoder: views, presets, dtype policies, configs."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import modeling

TINY = modeling.EncoderConfig(vocab_size=99, hidden_size=24, num_layers=3,
                              num_heads=3, intermediate_size=37,
                              max_position_embeddings=40)


class EncoderTest(tf.test.TestCase):

  def test_output_shapes(self):
    encoder = modeling.Encoder(TINY)
    ids, mask = hf_fixtures.padded_batch()
    out = encoder.model(hf_fixtures.encoder_inputs(ids, mask))
    self.assertEqual(out["sequence_output"].shape, (3, 7, 24))
    self.assertEqual(out["pooled_output"].shape, (3, 24))
    qkv = encoder.distillation_model(2)(hf_fixtures.encoder_inputs(ids, mask))
    for name in ("query", "key", "value"):
      self.assertEqual(qkv[name].shape, (3, 3, 7, 8))

  def test_distillation_view_matches_inspection_and_stops_at_its_layer(self):
    encoder = modeling.Encoder(TINY)
    ids, mask = hf_fixtures.padded_batch()
    inputs = hf_fixtures.encoder_inputs(ids, mask)
    everything = encoder.inspection_model()(inputs)
    for tap in range(3):
      view = encoder.distillation_model(tap)
      got = view(inputs)
      for name in ("query", "key", "value"):
        self.assertAllClose(got[name], everything[f"{name}_{tap}"], atol=1e-6)
      used = {layer.name for layer in view.layers}
      self.assertEqual(
          {n for n in used if n.startswith("encoder_layer_")},
          {f"encoder_layer_{i}" for i in range(tap)})
      self.assertIn(encoder.layers[tap].attention, view.layers)
      # Weights above the tap (and the tap's FFN) get no gradient: they are not
      # in the view's graph at all.
      with tf.GradientTape() as tape:
        out = view(inputs, training=True)
        loss = sum(tf.reduce_sum(v) for v in out.values())
      grads = tape.gradient(loss, encoder.weights)
      names_with_grad = {w.path for w, g in zip(encoder.weights, grads)
                         if g is not None}
      self.assertIn(f"encoder_layer_{tap}/attention/query/kernel",
                    names_with_grad)
      self.assertNotIn(f"encoder_layer_{tap}/intermediate/kernel",
                       names_with_grad)
    with self.assertRaisesRegex(ValueError, "layer index 3 is out of range for "
                                "a 3-layer encoder"):
      encoder.distillation_model(3)

  def test_padding_does_not_change_real_positions(self):
    encoder = modeling.Encoder(TINY)
    ids, mask = hf_fixtures.padded_batch(lengths=(4, 4, 4))
    short = encoder.model(hf_fixtures.encoder_inputs(ids[:, :4], mask[:, :4]))
    pad = lambda x: np.pad(x, [(0, 0), (0, 5)])
    long = encoder.model(hf_fixtures.encoder_inputs(pad(ids), pad(mask)))
    self.assertAllClose(short["sequence_output"],
                        long["sequence_output"][:, :4], atol=1e-5)

  def test_dropout_only_in_training(self):
    encoder = modeling.Encoder(TINY)
    inputs = hf_fixtures.encoder_inputs(*hf_fixtures.padded_batch())
    a = encoder.model(inputs, training=False)["sequence_output"]
    b = encoder.model(inputs, training=False)["sequence_output"]
    c = encoder.model(inputs, training=True)["sequence_output"]
    self.assertAllEqual(a, b)
    self.assertNotAllClose(a, c)

  def test_mixed_precision_policies(self):
    for policy, dtype in (("mixed_float16", tf.float16),
                          ("mixed_bfloat16", tf.bfloat16)):
      with self.subTest(policy=policy):
        keras.mixed_precision.set_global_policy(policy)
        encoder = modeling.Encoder(TINY)
        self.assertEqual(encoder.weights[0].dtype, "float32")
        inputs = hf_fixtures.encoder_inputs(*hf_fixtures.padded_batch())
        qkv = encoder.distillation_model(1)(inputs, training=True)
        self.assertEqual(qkv["query"].dtype, dtype)
        out = encoder.model(inputs)["sequence_output"]
        self.assertTrue(np.all(np.isfinite(tf.cast(out, tf.float32).numpy())))
        keras.mixed_precision.set_global_policy("float32")

  def test_presets(self):
    expected = {
        ("ppminilm", 6): (768, 12, 3072, "relu"),
        ("ppminilm", 4): (256, 16, 1024, "relu"),
        ("ppminilm", 2): (128, 4, 512, "relu"),
        ("roberta", 6): (768, 12, 3072, "gelu"),
    }
    for (model_type, layers), (hidden, heads, ffn, act) in expected.items():
      config = modeling.student_config(model_type, layers, vocab_size=21128)
      self.assertEqual((config.hidden_size, config.num_heads,
                        config.intermediate_size, config.hidden_act),
                       (hidden, heads, ffn, act))
      self.assertEqual((config.num_layers, config.max_position_embeddings,
                        config.type_vocab_size, config.pad_token_id),
                       (layers, 512, 2, 0))
    with self.assertRaisesRegex(ValueError, "no student preset for "
                                "model_type='ppminilm' with num_layers=5"):
      modeling.student_config("ppminilm", 5, vocab_size=10)
    with self.assertRaisesRegex(ValueError, "needs all of hidden_size"):
      modeling.student_config("ppminilm", 3, vocab_size=10, hidden_size=24,
                              num_heads=3)
    # A depth without a preset takes its whole shape from the overrides.
    config = modeling.student_config("ppminilm", 3, vocab_size=10,
                                     hidden_size=24, num_heads=3,
                                     intermediate_size=40)
    self.assertEqual((config.num_layers, config.hidden_size, config.num_heads,
                      config.intermediate_size, config.hidden_act),
                     (3, 24, 3, 40, "relu"))
    self.assertEqual(modeling.student_config(
        "roberta", 5, vocab_size=10, hidden_size=24, num_heads=3,
        intermediate_size=40).hidden_act, "gelu")

  def test_layer_configs_are_constructor_arguments(self):
    encoder = modeling.Encoder(TINY)
    base = set(keras.layers.Layer(name="x").get_config())
    layers = {"layer": encoder.layers[0], "attention": encoder.layers[0].attention,
              "embeddings": encoder.embeddings, "pooler": encoder.pooler}
    want = {
        "layer": {"hidden_size": 24, "num_heads": 3, "intermediate_size": 37,
                  "hidden_act": "gelu", "attention_dropout": 0.1,
                  "hidden_dropout": 0.1, "layer_norm_eps": 1e-12,
                  "initializer_range": 0.02},
        "attention": {"hidden_size": 24, "num_heads": 3,
                      "attention_dropout": 0.1, "hidden_dropout": 0.1,
                      "layer_norm_eps": 1e-12, "initializer_range": 0.02},
        "embeddings": {"vocab_size": 99, "hidden_size": 24,
                       "max_position_embeddings": 40, "type_vocab_size": 2,
                       "layer_norm_eps": 1e-12, "dropout": 0.1,
                       "initializer_range": 0.02, "pad_token_id": 0,
                       "position_style": "absolute"},
        "pooler": {"hidden_size": 24, "initializer_range": 0.02}}
    for name, layer in layers.items():
      with self.subTest(layer=name):
        config = layer.get_config()
        self.assertEqual({k: v for k, v in config.items() if k not in base},
                         want[name])
        clone = type(layer).from_config(config)
        self.assertEqual(clone.get_config(), config)

  def test_saved_student_loads_back(self):
    encoder = modeling.Encoder(TINY)
    path = os.path.join(self.get_temp_dir(), "student.keras")
    encoder.model.save(path)
    loaded = keras.saving.load_model(path)
    inputs = hf_fixtures.encoder_inputs(*hf_fixtures.padded_batch())
    self.assertAllClose(loaded(inputs)["sequence_output"],
                        encoder.model(inputs)["sequence_output"], atol=1e-6)

  def test_dropout_of_replica_0_is_keras_dropout_and_others_differ(self):
    # Each replica count in its own process (logical CPU devices).
    script = r"""
import json
import numpy as np
import tensorflow as tf
import keras
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)
from tf_minilm import modeling
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
ones = tf.ones([4, 64])
with strategy.scope():
  ours = modeling.ReplicaDropout(0.5, seed=11)
per_replica = strategy.run(lambda: ours(ones, training=True))
a, b = [t.numpy() for t in strategy.experimental_local_results(per_replica)]
plain = keras.layers.Dropout(0.5, seed=11)(ones, training=True).numpy()
again = strategy.run(lambda: ours(ones, training=True))
a2 = strategy.experimental_local_results(again)[0].numpy()
print(json.dumps({"replica0_is_keras": bool(np.array_equal(a, plain)),
                  "replicas_differ": bool(not np.array_equal(a, b)),
                  "steps_differ": bool(not np.array_equal(a, a2)),
                  "rate": float((a == 0).mean())}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    self.assertTrue(result["replica0_is_keras"])
    self.assertTrue(result["replicas_differ"])
    self.assertTrue(result["steps_differ"])
    self.assertBetween(result["rate"], 0.35, 0.65)

  def test_invalid_config(self):
    with self.assertRaisesRegex(ValueError, "hidden_size=24 is not a multiple of "
                                "num_heads=5"):
      TINY.replace(num_heads=5)
    with self.assertRaisesRegex(ValueError, "hidden_act must be one of"):
      TINY.replace(hidden_act="swish")
    with self.assertRaisesRegex(ValueError, "unknown EncoderConfig fields"):
      modeling.EncoderConfig.from_dict({**json.loads(TINY.to_json()), "heads": 3})


if __name__ == "__main__":
  tf.test.main()
