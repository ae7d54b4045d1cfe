"""Check functions for the exercises at the end of each chapter: one module per chapter."""
