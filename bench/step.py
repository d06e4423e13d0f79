#!/usr/bin/env python3
"""Complete distillation training steps: throughput, time split, memory, MFU.

  .venv/bin/python bench/step.py                       # recipe shapes, batch 8
  .venv/bin/python bench/step.py --dtype=mixed_bfloat16 --jit
  .venv/bin/python bench/step.py --batch_size=128 --dtype=mixed_float16 --jit  # GPU

Default shapes are the recipe's: teacher 24 layers, hidden 1024, 16 heads, FFN
4096 (random weights; only its first 20 layers are built, the tap is layer 19);
student ppminilm 6L-768H; R=64; alpha 0, beta 1; L=128.

MFU = analytic matmul FLOPs of one step / step time / a matmul peak measured in
this run on the same device and dtype. FLOPs are reported two ways: the work
this trainer does (teacher up to its tap's Q/K/V) and the work the reference
does (the whole teacher), both with the same student and loss work.
"""

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import distiller
from tf_minilm import losses
from tf_minilm import modeling
from tf_minilm import resolve
from tf_minilm import selection
from tf_minilm import trainer


def layer_flops(length, hidden, ffn):
  """Forward matmul FLOPs of one Transformer layer for one sequence."""
  return 8 * length * hidden ** 2 + 4 * length ** 2 * hidden + \
      4 * length * hidden * ffn


def qkv_flops(length, hidden):
  return 6 * length * hidden ** 2


def step_flops(args, teacher_layers_run):
  """Matmul FLOPs of one step for the whole global batch (padded width)."""
  L, B = args.width, args.batch_size * args.replicas
  teacher = B * (teacher_layers_run * layer_flops(L, args.teacher_hidden,
                                                  args.teacher_ffn))
  if teacher_layers_run == args.teacher_layer_index:
    teacher += B * qkv_flops(L, args.teacher_hidden)
  s_hidden, s_ffn = args.student_hidden, args.student_ffn
  student_fwd = B * (args.student_layer_index * layer_flops(L, s_hidden, s_ffn)
                     + qkv_flops(L, s_hidden))
  # Relation scores: per Q/K/V and model, token-token 2*B*L*L*D, head-head
  # 2*B*L*R*D, sample-sample 2*B*B*L*D; the student's recomputation and
  # gradient cost about 3x its forward.
  weights = losses.relation_weights(args.alpha, args.beta)
  per_model = lambda d: (weights["token_token"] > 0) * 2 * B * L * L * d + (
      weights["head_head"] > 0) * 2 * B * L * args.relation_heads * d + (
          weights["sample_sample"] > 0) * 2 * args.batch_size * B * L * d
  loss = 3 * (2 * per_model(args.teacher_hidden) + 4 * per_model(s_hidden))
  return teacher + 3 * student_fwd + loss


def measure_peak(dtype, device, size=2048, repeats=10):
  """FLOP/s of a square matmul chain in `dtype` on `device`."""
  compute = {"float32": tf.float32, "mixed_float16": tf.float16,
             "mixed_bfloat16": tf.bfloat16}[dtype]
  with tf.device(device):
    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a, compute)

    @tf.function
    def chain(x):
      for _ in range(repeats):
        x = tf.matmul(x, a) * 0.01
      return x
    chain(a).numpy()
    times = []
    for _ in range(3):
      start = time.perf_counter()
      chain(a).numpy()
      times.append(time.perf_counter() - start)
  return 2 * size ** 3 * repeats / min(times)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--batch_size", type=int, default=8, help="per replica")
  p.add_argument("--seq_length", type=int, default=128)
  p.add_argument("--dtype", default="float32",
                 choices=["float32", "mixed_float16", "mixed_bfloat16"])
  p.add_argument("--jit", action="store_true")
  p.add_argument("--teacher_half", action="store_true",
                 help="hold the teacher's weights in the half dtype")
  p.add_argument("--replicas", type=int, default=1)
  p.add_argument("--padding", default="full",
                 choices=["full", "longest", "bucket"],
                 help="full: every row L tokens; longest/bucket: rows of "
                      "L/2..L tokens padded to the longest row or to a multiple "
                      "of 32 (the pipeline's two modes)")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--teacher_hidden", type=int, default=1024)
  p.add_argument("--teacher_heads", type=int, default=16)
  p.add_argument("--teacher_ffn", type=int, default=4096)
  p.add_argument("--teacher_total_layers", type=int, default=24)
  p.add_argument("--teacher_layer_index", type=int, default=19)
  p.add_argument("--student_layers", type=int, default=6)
  p.add_argument("--student_layer_index", type=int, default=5)
  p.add_argument("--relation_heads", type=int, default=64)
  p.add_argument("--alpha", type=float, default=0.0)
  p.add_argument("--beta", type=float, default=1.0)
  p.add_argument("--vocab_size", type=int, default=21128)
  p.add_argument("--student_selection", default="none",
                 choices=["none", "first", "uniform"],
                 help="select the student from the (random, whole) teacher "
                      "first, as bin/distill --student_selection does")
  args = p.parse_args()
  preset = modeling.student_config("ppminilm", args.student_layers, 1)
  args.student_hidden, args.student_ffn = (preset.hidden_size,
                                           preset.intermediate_size)

  gpus = tf.config.list_physical_devices("GPU")
  if not gpus and args.replicas > 1:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * args.replicas)
  kind = "GPU" if gpus else "CPU"
  devices = [d.name for d in tf.config.list_logical_devices(kind)][
      :args.replicas]
  strategy = (tf.distribute.MirroredStrategy(devices) if args.replicas > 1
              else tf.distribute.OneDeviceStrategy(devices[0]))
  keras.mixed_precision.set_global_policy(args.dtype)
  config = config_lib.DistillConfig(
      teacher_model_name_or_path="(random)", input_dir="(synthetic)",
      output_dir="(none)", num_layers=args.student_layers,
      teacher_layer_index=args.teacher_layer_index,
      student_layer_index=args.student_layer_index,
      num_relation_heads=args.relation_heads, alpha=args.alpha, beta=args.beta,
      batch_size=args.batch_size, use_amp=args.dtype != "float32",
      amp_dtype="bfloat16" if args.dtype == "mixed_bfloat16" else "float16",
      jit=args.jit, warmup_steps=10, max_steps=1000,
      teacher_half_precision=args.teacher_half,
      student_selection=args.student_selection)
  resolved = resolve.Resolved(
      teacher=modeling.EncoderConfig(
          vocab_size=args.vocab_size, hidden_size=args.teacher_hidden,
          num_layers=args.teacher_total_layers, num_heads=args.teacher_heads,
          intermediate_size=args.teacher_ffn),
      student=modeling.student_config("ppminilm", args.student_layers,
                                      args.vocab_size),
      tokenizer_settings=None, shards=[], eval_shards=None)
  if config.selects_student:
    try:
      selection.check_fits(resolved.teacher, resolved.student)
    except ValueError as e:
      p.error(f"--student_selection={args.student_selection}: {e}")
  build_start = time.perf_counter()
  task = distiller.DistillationTask(config, resolved, strategy,
                                    random_weights=True)
  train_step = trainer.Trainer(task, strategy, config).train_step
  build_seconds = time.perf_counter() - build_start
  models = task.models

  rng = np.random.default_rng(0)
  ids = rng.integers(5, args.vocab_size, size=(args.batch_size,
                                               args.seq_length)).astype(np.int32)
  if args.padding != "full":
    lengths = rng.integers(args.seq_length // 2, args.seq_length + 1,
                           size=args.batch_size)
    width = int(lengths.max())
    if args.padding == "bucket":
      width = min(args.seq_length, -(-width // 32) * 32)
    ids = np.where(np.arange(args.seq_length)[None] < lengths[:, None], ids,
                   0)[:, :width].astype(np.int32)
  batch = {"token_ids": ids, "segment_ids": np.zeros_like(ids),
           "padding_mask": ids != 0}
  args.width = ids.shape[1]
  dataset = tf.data.Dataset.from_tensors(batch).repeat()
  iterator = iter(strategy.experimental_distribute_dataset(
      dataset.unbatch().batch(args.batch_size * strategy.num_replicas_in_sync)))
  local = {k: tf.constant(v) for k, v in batch.items()}

  teacher_fn = tf.function(lambda b: models.teacher_view(b),
                           jit_compile=args.jit)
  compute_fn = tf.function(lambda b: train_step.replica_gradients([b]),
                           jit_compile=args.jit)
  qkv_t = {k: tf.identity(v) for k, v in teacher_fn(local).items()}
  qkv_s = {k: tf.identity(v) for k, v in
           models.student_view(local).items()}

  def loss_only():
    with tf.GradientTape() as tape:
      s = [qkv_s[n] for n in ("query", "key", "value")]
      tape.watch(s)
      out = losses.multi_relation_loss(
          s, [qkv_t[n] for n in ("query", "key", "value")],
          local["padding_mask"], args.relation_heads, args.alpha, args.beta)
    return tape.gradient(out.total, s)
  loss_fn = tf.function(loss_only, jit_compile=args.jit)

  def timed(fn, *fn_args):
    for _ in range(args.warmup):
      tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t,
                            fn(*fn_args))
    times = []
    for _ in range(args.steps):
      start = time.perf_counter()
      out = fn(*fn_args)
      tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t,
                            out)
      times.append(time.perf_counter() - start)
    return statistics.median(times)

  step = timed(lambda: {k: v for k, v in train_step(iterator).items()
                        if k == "loss"})
  teacher = timed(teacher_fn, local)
  compute = timed(compute_fn, local) if strategy.num_replicas_in_sync == 1 \
      else float("nan")
  loss = timed(loss_fn)
  grads = [tf.zeros_like(v) for v in train_step.trainable]
  optimizer = timed(tf.function(
      lambda: train_step.optimizer.apply(grads, 1e-4) or 0))
  peak = measure_peak(args.dtype, devices[0])
  global_batch = args.batch_size * strategy.num_replicas_in_sync
  ours = step_flops(args, args.teacher_layer_index)
  reference = step_flops(args, args.teacher_total_layers)
  if gpus:
    memory = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 30
    memory_text = f"peak GPU memory {memory:.2f} GiB"
  else:
    memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    memory_text = f"peak resident memory {memory:.2f} GiB (whole process)"
  print(f"device {devices[0]} x{strategy.num_replicas_in_sync}, dtype "
        f"{args.dtype}, XLA {'on' if args.jit else 'off'}, teacher weights "
        f"{models.teacher.weights[0].dtype} "
        f"({models.teacher.weight_bytes() / 2 ** 30:.2f} GiB), batch "
        f"{args.batch_size}/replica, L={args.seq_length}, padding "
        f"{args.padding} (batch width {ids.shape[1]})")
  print(f"models built in {build_seconds:.1f} s (student selection: "
        f"{args.student_selection})")
  print(f"step {step * 1e3:.0f} ms | {global_batch / step:.2f} sequences/s | "
        f"{global_batch * int(batch['padding_mask'].sum()) / args.batch_size / step:,.0f}"
        f" real tokens/s | {memory_text}")
  print(f"split (each part timed alone): teacher forward {teacher * 1e3:.0f} "
        f"ms | student forward+backward with loss {(compute - teacher) * 1e3:.0f}"
        f" ms (the loss alone, forward+backward: {loss * 1e3:.0f} ms) | "
        f"optimizer {optimizer * 1e3:.0f} ms")
  print(f"matmul peak measured: {peak / 1e12:.3f} TFLOP/s")
  print(f"step FLOPs (ours, teacher to its tap): {ours / 1e9:.0f} GFLOP -> "
        f"{ours / step / 1e12:.3f} TFLOP/s, MFU {ours / step / peak:.1%}")
  print(f"step FLOPs (reference, whole teacher): {reference / 1e9:.0f} GFLOP "
        f"(useful-work MFU if it ran as fast: {reference / step / peak:.1%})")


if __name__ == "__main__":
  main()
