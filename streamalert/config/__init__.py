"""Configuration: pydantic models for rule files, loading, and errors that name file, rule and field."""
