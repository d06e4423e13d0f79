"""Fine-tuning a (distilled) encoder for text classification: `run(config)`.

config -> examples (finetune_data) -> FineTuningTask (classifier, loss,
inputs, per-epoch evaluation and export) -> trainer.Trainer (the step,
checkpoint, lifecycle and loop distillation uses) -> best epoch ->
best_model/ with a SavedModel; optional search over learning rates x batch
sizes and a prediction file.

  <output_dir>/                     one setting (or each setting of a search
    finetune_config.json            in <output_dir>/lr<rate>_bs<size>/)
    checkpoints/, tensorboard/
    model_<step>/hf/                every epoch: BertForSequenceClassification
    eval_results.json               dev metrics of every epoch
    best_model/                     the best epoch: hf/, saved_model/,
                                    finetune_info.json (with --int8:
                                    hf/onnx/, float32 and int8 ONNX)
    <task>_predict.json             with test data: {"id", "label"} per line
  results.csv, results.md           a search's table (in the top directory)

The classifier is dropout + dense on BERT's pooled output by default, as
PaddleNLP's and transformers' sequence classifiers are (so the HF copy is a
plain `BertForSequenceClassification`); `--nouse_pooler` uses the raw [CLS]
state. Distillation never trains the pooler, fine-tuning does.
"""

import csv
import dataclasses
import io
import json
import os
import shutil
from typing import Callable, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import convert
from tf_minilm import export as export_lib
from tf_minilm import finetune_data
from tf_minilm import io_utils
from tf_minilm import layout as layout_lib
from tf_minilm import modeling
from tf_minilm import onnx_export
from tf_minilm import resume
from tf_minilm import text_encoding
from tf_minilm import tokenization
from tf_minilm import trainer

ConfigError = config_lib.ConfigError
INFO_FILE = "finetune_info.json"
EVAL_RESULTS = "eval_results.json"
BEST_MODEL = "best_model"
CLASSIFIER_KERNEL = "classifier.weight"
CLASSIFIER_BIAS = "classifier.bias"


# ---------------------------------------------------------------- inputs

@dataclasses.dataclass(frozen=True)
class TaskData:
  train: finetune_data.Dataset
  dev: finetune_data.Dataset
  test: Optional[finetune_data.Dataset]


def read_task_data(config: config_lib.FinetuneConfig) -> TaskData:
  """Train, dev and (optional) test examples; errors name the flag of the
  file they are about."""
  c = config

  def read(flag, reader):
    try:
      return reader()
    except finetune_data.DataFormatError as e:
      raise ConfigError(flag, getattr(c, flag), str(e)) from None

  if c.task != "custom":
    split = lambda name: read("data_dir", lambda: finetune_data.read_clue(
        c.data_dir, c.task, name))
    test_path = finetune_data.clue_file(c.data_dir, c.task, "test")
    return TaskData(split("train"), split("dev"),
                    split("test") if os.path.isfile(test_path) else None)
  columns = dict(text_column=c.text_column,
                 text_pair_column=c.text_pair_column or None,
                 id_column=c.id_column or None)
  train = read("train_file", lambda: finetune_data.read_table(
      c.train_file, label_column=c.label_column, **columns))
  dev = read("dev_file", lambda: finetune_data.read_table(
      c.dev_file, label_column=c.label_column, labels=train.labels,
      **columns))
  test = (read("test_file", lambda: finetune_data.read_table(
      c.test_file, label_column=None, **columns)) if c.test_file else None)
  return TaskData(train, dev, test)


def _tensors(dataset: finetune_data.Dataset):
  examples = dataset.examples
  return (tf.constant([e.text for e in examples]),
          tf.constant([e.text_pair or "" for e in examples]),
          tf.constant([-1 if e.label is None else e.label for e in examples],
                      tf.int32))


def make_encoder(tokenizer: text_encoding.Tokenizer, max_seq_length: int,
                 pairs: bool):
  """(text, text_pair, label) batches -> model inputs and `label`."""
  encoder = text_encoding.TextEncoder(tokenizer, max_seq_length)

  def encode(text, text_pair, label):
    batch = (encoder.encode_pairs(text, text_pair) if pairs else
             encoder.encode(text))
    return dict(batch, label=label)
  return encode


def model_inputs(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  return {name: batch[name] for name in modeling.encoder_inputs()}


# ---------------------------------------------------------------- the model

class Classifier:
  """An encoder with dropout and a dense layer on [CLS]'s pooled (or raw)
  state: `model` maps the encoder inputs to float32 logits `[B, C]`."""

  def __init__(self, encoder: modeling.Encoder, num_labels: int,
               use_pooler: bool, dropout: float):
    self.encoder = encoder
    self.use_pooler = use_pooler
    inputs = modeling.encoder_inputs()
    outputs = encoder.model(inputs)
    features = (outputs["pooled_output"] if use_pooler else
                outputs["sequence_output"][:, 0, :])
    features = modeling.ReplicaDropout(dropout)(features)
    self.dense = keras.layers.Dense(
        num_labels, name="classifier",
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=encoder.config.initializer_range))
    logits = keras.layers.Activation("linear", dtype="float32",
                                     name="logits")(self.dense(features))
    self.model = keras.Model(inputs, logits, name="classifier_model")


def _encoder_dir(source: str) -> str:
  hf_dir = os.path.join(source, layout_lib.STUDENT_HF)
  return hf_dir if os.path.isdir(hf_dir) else source


def load_source(config: config_lib.FinetuneConfig, num_labels: int
                ) -> Classifier:
  """The classifier on the encoder of --model_name_or_path (or a random one
  of its architecture with --init_random); call inside the strategy scope."""
  path = _encoder_dir(config.model_name_or_path)
  try:
    if config.init_random:
      architecture = convert.read_encoder_config(path).replace(
          with_pooler=config.use_pooler)
      encoder = modeling.Encoder(architecture, name="encoder")
    elif os.path.isfile(os.path.join(path, convert.CONVERTED_CONFIG)):
      encoder = convert.load_encoder(path, name="encoder")
    else:
      encoder = convert.load_encoder(path, with_pooler=config.use_pooler,
                                     name="encoder")
  except convert.CheckpointError as e:
    raise ConfigError("model_name_or_path", config.model_name_or_path,
                      str(e)) from None
  if config.use_pooler and encoder.pooler is None:
    raise ConfigError("model_name_or_path", config.model_name_or_path,
                      "has no pooler; pass --nouse_pooler to classify the "
                      "raw [CLS] state")
  return Classifier(encoder, num_labels, config.use_pooler, config.dropout)


def tokenizer_dir(source: str) -> str:
  for candidate in (source, os.path.join(source, layout_lib.STUDENT_HF)):
    if tokenization.has_tokenizer_files(candidate):
      return candidate
  raise ConfigError("model_name_or_path", source,
                    "holds no vocab.txt or tokenizer.json")


# ---------------------------------------------------------------- metrics

def metrics(labels: np.ndarray, predictions: np.ndarray, num_labels: int
            ) -> Dict[str, float]:
  """Accuracy, and macro-F1 over the classes for more than two classes."""
  result = {"accuracy": float(np.mean(labels == predictions))}
  if num_labels > 2:
    scores = []
    for c in range(num_labels):
      true_pos = np.sum((predictions == c) & (labels == c))
      predicted, actual = np.sum(predictions == c), np.sum(labels == c)
      if predicted + actual:
        scores.append(2 * true_pos / (predicted + actual))
    result["macro_f1"] = float(np.mean(scores))
  return result


def selection_metric(num_labels: int) -> str:
  return "macro_f1" if num_labels > 2 else "accuracy"


# ---------------------------------------------------------------- the task

class FineTuningTask(trainer.Task):
  """The classifier, its loss, inputs, evaluation and export for one setting
  (learning rate, batch size)."""

  def __init__(self, config: config_lib.FinetuneConfig, task_data: TaskData,
               strategy: tf.distribute.Strategy, layout: layout_lib.RunLayout):
    self.config = config
    self.data = task_data
    self.strategy = strategy
    self.layout = layout
    self.labels = task_data.train.labels
    self.tokenizer_dir = tokenizer_dir(config.model_name_or_path)
    self.tokenizer_settings = tokenization.read_tokenizer(self.tokenizer_dir)
    self.tokenizer: Optional[text_encoding.Tokenizer] = None
    self.global_batch = config.batch_size * strategy.num_replicas_in_sync
    self.steps_per_epoch = len(task_data.train.examples) // (
        self.global_batch * config.grad_accum_steps)
    if self.steps_per_epoch < 1:
      raise ConfigError("batch_size", config.batch_size,
                        f"the {len(task_data.train.examples)} training "
                        f"examples make no step of {self.global_batch} x "
                        f"{config.grad_accum_steps} examples")
    max_steps = self.steps_per_epoch * config.epochs
    self.schedule = trainer.Schedule(
        max_steps=max_steps,
        warmup_steps=int(config.warmup_proportion * max_steps),
        save_steps=self.steps_per_epoch, eval_every=self.steps_per_epoch,
        global_batch=self.global_batch * config.grad_accum_steps)
    self.classifier: Optional[Classifier] = None
    self._encode = None
    # Evaluation runs every epoch: its input pipelines and forward passes
    # are traced once, not at each call. Keyed by id: each value holds its
    # key's object (the dataset beside its pipeline, the model in the
    # function's closure), so an id is never reused while cached.
    self._prediction_batches: Dict[
        int, Tuple[finetune_data.Dataset, tf.data.Dataset]] = {}
    self._probabilities: Dict[int, Callable] = {}

  def prepare(self) -> None:
    self.tokenizer = self.tokenizer_settings.tokenizer()
    self._encode = make_encoder(self.tokenizer, self.config.max_seq_length,
                                self.data.train.pairs)

  def build(self) -> None:
    self.classifier = load_source(self.config, len(self.labels))

  def trainable_weights(self):
    return self.classifier.model.trainable_weights

  def model_weights(self):
    return self.classifier.model.weights

  def checkpointed(self):
    return {"classifier": self.classifier.model}

  def dropout_models(self):
    return [self.classifier.model]

  def loss(self, batch, training: bool) -> trainer.StepLoss:
    logits = self.classifier.model(model_inputs(batch), training=training)
    labels = batch["label"]
    per_example = keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)
    mask = batch["padding_mask"]
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                               labels), tf.float32)
    return trainer.StepLoss(
        total=tf.reduce_mean(per_example),
        terms={"train_accuracy": tf.reduce_mean(correct)},
        examples=tf.cast(tf.shape(labels)[0], tf.float32),
        tokens=tf.reduce_sum(tf.cast(mask, tf.float32)),
        computed_tokens=tf.cast(tf.size(mask), tf.float32))

  def train_dataset(self, start_step: int):
    """Epochs of the training examples, reshuffled every epoch (seeded, so a
    resumed run skips to the same batch)."""
    examples = len(self.data.train.examples)
    dataset = tf.data.Dataset.from_tensor_slices(_tensors(self.data.train))
    dataset = dataset.shuffle(examples, seed=self.config.seed,
                              reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(self.global_batch, drop_remainder=True)
    dataset = dataset.skip(start_step * self.config.grad_accum_steps)
    dataset = dataset.map(self._encode, num_parallel_calls=tf.data.AUTOTUNE)
    return self.strategy.experimental_distribute_dataset(
        dataset.prefetch(tf.data.AUTOTUNE))

  def predict(self, dataset: finetune_data.Dataset,
              classifier: Optional[Classifier] = None) -> np.ndarray:
    """Class probabilities `[N, C]` of every example, in order, by
    `classifier` (default: the one being trained)."""
    model = (classifier or self.classifier).model
    if id(dataset) not in self._prediction_batches:
      self._prediction_batches[id(dataset)] = (
          dataset, tf.data.Dataset.from_tensor_slices(_tensors(dataset))
          .batch(self.global_batch).map(self._encode))
    _, batches = self._prediction_batches[id(dataset)]
    if id(model) not in self._probabilities:
      self._probabilities[id(model)] = tf.function(
          lambda inputs: tf.nn.softmax(model(inputs, training=False)),
          reduce_retracing=True)
    probabilities = self._probabilities[id(model)]
    return np.concatenate([probabilities(model_inputs(batch)).numpy()
                           for batch in batches])

  def evaluate(self, step: int, train_step) -> Dict[str, float]:
    """Dev metrics of the model at `step`, also recorded in eval_results.json
    (epochs are selected from there)."""
    del train_step  # the classifier predicts the dev set itself
    labels = np.array([e.label for e in self.data.dev.examples])
    result = metrics(labels, self.predict(self.data.dev).argmax(-1),
                     len(self.labels))
    if trainer.worker_name(self.strategy) is None:
      results = read_eval_results(self.layout.output_dir)
      results[str(step)] = result
      with io_utils.atomic_file(os.path.join(self.layout.output_dir,
                                             EVAL_RESULTS)) as f:
        json.dump(results, f, indent=2, sort_keys=True)
    return result

  def export(self, model_dir: str) -> None:
    """`model_dir` with hf/ (BertForSequenceClassification) and the labels."""
    with io_utils.atomic_directory(model_dir, overwrite=True) as staging:
      write_classifier(self.classifier, os.path.join(staging,
                                                     layout_lib.STUDENT_HF),
                       self.tokenizer_dir, self.labels)
      write_info(staging, self.config, self.labels, self.data.train.pairs)


def read_eval_results(output_dir: str) -> Dict[str, Dict[str, float]]:
  path = os.path.join(output_dir, EVAL_RESULTS)
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_info(directory: str, config: config_lib.FinetuneConfig,
               labels, pairs: bool) -> None:
  with open(os.path.join(directory, INFO_FILE), "w", encoding="utf-8") as f:
    json.dump({"task": config.task, "labels": list(labels), "pairs": pairs,
               "max_seq_length": config.max_seq_length,
               "use_pooler": config.use_pooler}, f, indent=2)


def write_classifier(classifier: Classifier, hf_dir: str, tokenizer_source: str,
                     labels) -> None:
  """A `transformers.BertForSequenceClassification` directory."""
  kernel, bias = (np.asarray(w.numpy(), np.float32)
                  for w in classifier.dense.weights)
  convert.export_hf(
      classifier.encoder, hf_dir, tokenizer_dir=tokenizer_source,
      prefix="bert.",
      head_tensors={CLASSIFIER_KERNEL: np.ascontiguousarray(kernel.T),
                    CLASSIFIER_BIAS: bias},
      config_updates={
          "architectures": ["BertForSequenceClassification"],
          "id2label": {str(i): label for i, label in enumerate(labels)},
          "label2id": {label: i for i, label in enumerate(labels)}})


def load_classifier(model_dir: str) -> Tuple[Classifier, Dict]:
  """A classifier exported by `FineTuningTask.export`, and its info."""
  with open(os.path.join(model_dir, INFO_FILE), encoding="utf-8") as f:
    info = json.load(f)
  hf_dir = os.path.join(model_dir, layout_lib.STUDENT_HF)
  encoder = convert.load_encoder(hf_dir, with_pooler=info["use_pooler"],
                                 dtype="float32", name="encoder")
  classifier = Classifier(encoder, len(info["labels"]), info["use_pooler"],
                          0.0)
  tensors, _ = convert.read_hf_tensors(hf_dir)
  classifier.dense.set_weights([tensors[CLASSIFIER_KERNEL].T,
                                tensors[CLASSIFIER_BIAS]])
  return classifier, info


# ---------------------------------------------------------------- running

def _setting_dir(output_dir: str, rate: float, size: int, search: bool) -> str:
  return os.path.join(output_dir, config_lib.setting_name(rate, size)) \
      if search else output_dir


def _train_setting(config: config_lib.FinetuneConfig, task_data: TaskData,
                   strategy) -> trainer.RunResult:
  """Trains one setting into config.output_dir; a finished run's logs are
  its best epoch (on the chief)."""
  layout = layout_lib.RunLayout(config.output_dir,
                                config_lib.FINETUNE_CONFIG_FILENAME)
  stored = layout.read_config()
  if stored is not None:
    resume.check_resumable(config, stored, layout.config_path,
                           config_lib.FINETUNE_RESUMABLE_FIELDS)
  task = FineTuningTask(config, task_data, strategy, layout)
  return trainer.Trainer(task, strategy, config).run(
      layout, "bin/finetune", resume.stored_json(config),
      on_finish=lambda: _keep_best(task, layout))


def _keep_best(task: FineTuningTask, layout: layout_lib.RunLayout) -> Dict:
  """best_model/ = the best epoch's model with a SavedModel; predictions."""
  metric = selection_metric(len(task.labels))
  results = read_eval_results(layout.output_dir)
  steps = sorted(int(s) for s in results)
  best_step = max(steps, key=lambda s: (results[str(s)][metric], -s))
  best_dir = os.path.join(layout.output_dir, BEST_MODEL)
  try:
    with io_utils.atomic_directory(best_dir, overwrite=True) as staging:
      shutil.copytree(layout.model_dir(best_step), staging,
                      dirs_exist_ok=True)
      classifier, info = load_classifier(staging)
      export_lib.export_classifier(
          classifier.model, task.tokenizer,
          task.tokenizer_settings.path, info["labels"],
          info["max_seq_length"],
          os.path.join(staging, export_lib.SAVED_MODEL))
      if task.config.int8:
        kernel, bias = (np.asarray(w.numpy(), np.float32)
                        for w in classifier.dense.weights)
        onnx_export.write_classifier(
            os.path.join(staging, layout_lib.STUDENT_HF), kernel, bias,
            info["use_pooler"], info["labels"])
    if task.data.test is not None:
      _write_predictions(task, classifier, layout.output_dir)
  except (OSError, tf.errors.OpError) as e:
    raise trainer.RunError(trainer.write_failure(
        e, layout.output_dir, f"{BEST_MODEL}/ and predictions")) from None
  return {"best_step": best_step, "epoch": best_step // task.steps_per_epoch,
          **results[str(best_step)]}


def _write_predictions(task: FineTuningTask, classifier: Classifier,
                       output_dir: str) -> None:
  predictions = task.predict(task.data.test, classifier).argmax(-1)
  path = os.path.join(output_dir, f"{task.config.task}_predict.json")
  with io_utils.atomic_file(path) as f:
    for example, label in zip(task.data.test.examples, predictions):
      f.write(json.dumps({"id": example.id, "label": task.labels[label]},
                         ensure_ascii=False) + "\n")


def _write_table(output_dir: str, rows: List[Dict], metric: str) -> None:
  columns = ["learning_rate", "batch_size", "epoch", "accuracy"] + (
      ["macro_f1"] if metric == "macro_f1" else []) + ["directory"]
  text = io.StringIO()
  writer = csv.DictWriter(text, columns, extrasaction="ignore")
  writer.writeheader()
  writer.writerows(rows)
  with io_utils.atomic_file(os.path.join(output_dir, "results.csv")) as f:
    f.write(text.getvalue())
  best = max(rows, key=lambda r: r[metric])
  lines = ["| " + " | ".join(columns) + " |",
           "|" + " --- |" * len(columns)]
  for row in rows:
    cells = [f"{row[c]:.4f}" if isinstance(row[c], float) and c not in (
        "learning_rate",) else str(row[c]) for c in columns]
    mark = " **best**" if row is best else ""
    lines.append("| " + " | ".join(cells) + f" |{mark}")
  with io_utils.atomic_file(os.path.join(output_dir, "results.md")) as f:
    f.write("\n".join(lines) + "\n")


def _check_source(config: config_lib.FinetuneConfig) -> None:
  """The source's architecture and vocabulary fit together and the flags
  (read without starting TensorFlow: the strategy comes first)."""
  source = config.model_name_or_path
  vocab_dir = tokenizer_dir(source)
  try:
    settings = tokenization.read_tokenizer(vocab_dir)
    architecture = convert.read_encoder_config(_encoder_dir(source))
  except (ValueError, OSError) as e:
    raise ConfigError("model_name_or_path", source, str(e)) from None
  if len(settings.vocab) > architecture.vocab_size:
    raise ConfigError("model_name_or_path", source,
                      f"{os.path.basename(settings.path)} has "
                      f"{len(settings.vocab)} tokens but the model embeds "
                      f"only {architecture.vocab_size}")
  if settings.pad_id != architecture.pad_token_id:
    raise ConfigError("model_name_or_path", source,
                      f"{os.path.basename(settings.path)} pads with id "
                      f"{settings.pad_id} but the model's pad_token_id is "
                      f"{architecture.pad_token_id}")
  specials = settings.num_special_tokens(pair=True)
  if config.max_seq_length < specials:
    raise ConfigError("max_seq_length", config.max_seq_length,
                      f"must be >= {specials}, the special tokens the "
                      "model's tokenizer puts around a pair of texts")
  if config.max_seq_length > architecture.usable_positions:
    raise ConfigError("max_seq_length", config.max_seq_length,
                      f"exceeds the {architecture.positions_text()} the "
                      "model embeds")
  if config.int8:
    try:
      onnx_export.require_toolchain()
    except onnx_export.OnnxExportError as e:
      raise ConfigError("int8", True, str(e)) from None


def _check_batch_sizes(config: config_lib.FinetuneConfig, examples: int,
                       replicas: int) -> None:
  """Every setting of the grid makes at least one step per epoch (checked
  before the first setting trains)."""
  for _, size in config.grid():
    if examples < size * replicas * config.grad_accum_steps:
      flag = "batch_sizes" if config.batch_sizes else "batch_size"
      raise ConfigError(flag, getattr(config, flag),
                        f"the {examples} training examples make no step of "
                        f"{size} x {replicas} replicas x "
                        f"{config.grad_accum_steps} accumulation steps")


def run(config: config_lib.FinetuneConfig) -> trainer.RunResult:
  """Fine-tunes every setting of the grid (one by default), keeps each
  setting's best epoch and, for a search, writes the results table.

  Raises ConfigError (before anything is written), io_utils.LockedError,
  trainer.DivergedError or trainer.RunError.
  """
  config_lib.validate_finetune(config)
  layout_lib.check_output_dir(
      config.output_dir, "bin/finetune",
      {flag: getattr(config, flag) for flag in (
          "model_name_or_path", "data_dir", "train_file", "dev_file",
          "test_file")})
  task_data = read_task_data(config)
  _check_source(config)
  strategy = trainer.make_strategy(config.device, config.strategy,
                                   config.cpu_replicas, config.tpu)
  _check_batch_sizes(config, len(task_data.train.examples),
                     strategy.num_replicas_in_sync)
  grid = config.grid()
  search = len(grid) > 1
  chief = trainer.worker_name(strategy) is None
  rows = []
  with trainer.precision_policy(config.amp_policy):
    for rate, size in grid:
      setting = dataclasses.replace(
          config, learning_rate=rate, batch_size=size, learning_rates="",
          batch_sizes="",
          output_dir=_setting_dir(config.output_dir, rate, size, search))
      result = _train_setting(setting, task_data, strategy)
      if not result.finished:
        return result
      if chief:
        best = result.logs
        print(f"lr {rate:g} bs {size}: best epoch {best['epoch']} | " +
              " | ".join(f"{k} {v:.4f}" for k, v in best.items()
                         if k in ("accuracy", "macro_f1")), flush=True)
        rows.append(dict(best, learning_rate=rate, batch_size=size,
                         directory=os.path.relpath(setting.output_dir,
                                                   config.output_dir)))
      keras.backend.clear_session()
  if search and chief:
    _write_table(config.output_dir, rows,
                 selection_metric(len(task_data.train.labels)))
  return trainer.RunResult(finished=True, step=0,
                           logs=rows[-1] if rows else {})
