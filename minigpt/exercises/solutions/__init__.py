"""The exercises' solutions, a module a chapter; the chapters show them from
here."""
