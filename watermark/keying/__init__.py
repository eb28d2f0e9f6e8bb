"""Keys and the keyed PRF: secret bytes, their sub-keys, and the one pseudo-random function every
scheme draws from (plus the integer keys of transformers and vLLM)."""
