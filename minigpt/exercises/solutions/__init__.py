"""The exercises\x27 solutions, a module a chapter; the chapters show them from here."""
