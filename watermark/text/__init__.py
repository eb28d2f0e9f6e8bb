"""Text handling before tokens: input readers, canonical text (whitespace, confusables), and the
tokenisation used for detection."""
