"""Attacks on watermarks: removal, paraphrase, stealing, scrubbing and spoofing."""
