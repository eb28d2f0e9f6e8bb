"""The model stack: loading models and tokenizers offline, batched generation, and the
translation of transformers' watermarking configs."""
