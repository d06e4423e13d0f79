"""PP-MiniLM / MiniLMv2 multi-relation distillation with TensorFlow and Keras.

Modules: losses (the relation loss), modeling (encoders), convert (HF
checkpoints), tokenization, corpus, data (tf.data), config (flags), optimization,
distiller (training loop), export (serving).
"""

__version__ = "0.1.0"
