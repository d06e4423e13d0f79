"""PP-MiniLM / MiniLMv2 multi-relation distillation with TensorFlow and Keras.

Modules: losses (the relation loss), modeling (encoders), convert (HF
checkpoints), tokenization and unigram_tokenization, corpus, data (tf.data),
config (flags), resolve (what a config names), selection (students selected
from their teacher), sentence_embedding, optimization, trainer (the training
loop), distiller and finetune (the two tasks), export (SavedModel, Keras, HF)
and onnx_export (float32 and int8 ONNX).
"""

__version__ = "0.1.0"
