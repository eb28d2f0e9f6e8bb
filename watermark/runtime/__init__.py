"""The runtime around detection: corpus streaming, reports, atomic output files, the engines
(Ray, vLLM) and the HTTP service."""
