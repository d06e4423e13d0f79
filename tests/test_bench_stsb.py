"""bench/stsb.py refuses a model it cannot score in one line, exit 2, before
downloading the STS-B wheel."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import hf_fixtures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STSB = os.path.join(REPO, "bench", "stsb.py")


class StsbRefusalTest(hf_fixtures.TinyModelTestCase):
  TINY_MODEL = dict(num_hidden_layers=1)

  def _model(self, name, files):
    directory = os.path.join(self.root, name)
    shutil.copytree(self.model_dir, directory)
    for path, content in files.items():
      os.makedirs(os.path.dirname(os.path.join(directory, path)),
                  exist_ok=True)
      with open(os.path.join(directory, path), "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    return directory

  def test_bad_models_are_named_before_the_download(self):
    run_dir = os.path.join(self.root, "a_run")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "distill_config.json"), "w") as f:
      f.write("{}")
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    cases = {
        os.path.join(self.root, "missing"): "not a directory",
        run_dir: "a bin/distill run directory; pass one of its model_<step>/",
        self._model("broken_modules", {"modules.json": "{not json"}):
            "modules.json",
        self._model("two_poolings", {
            "modules.json": modules,
            "1_Pooling/config.json": {"word_embedding_dimension": 24,
                                      "pooling_mode_mean_tokens": True,
                                      "pooling_mode_cls_token": True}}):
            r"pooling \['mean', 'cls'\] is not supported",
    }
    spec = importlib.util.spec_from_file_location("stsb", STSB)
    stsb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stsb)
    for model_dir, message in cases.items():
      with self.subTest(model_dir=os.path.basename(model_dir)):
        with self.assertRaisesRegex(stsb.StsError,
                                    f"^--model_dir={model_dir}: .*{message}"):
          stsb.model_source(model_dir)
    # The command: one line, exit 2, nothing downloaded or written.
    download = os.path.join(self.root, "download")
    proc = subprocess.run(
        [sys.executable, STSB, f"--model_dir={run_dir}",
         f"--output_json={os.path.join(self.root, 'out.json')}",
         f"--download_dir={download}"],
        capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    self.assertEqual(proc.stderr.strip().splitlines(), [
        f"error: --model_dir={run_dir}: a bin/distill run directory; pass "
        "one of its model_<step>/ directories or a bin/export output"])
    self.assertFalse(os.path.exists(download))
    self.assertFalse(os.path.exists(os.path.join(self.root, "out.json")))
