"""State: one store protocol with an in-process and a Redis backend."""
