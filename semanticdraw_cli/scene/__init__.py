"""The scene: its dataclasses, reading YAML and layered drawings, validation, and the bounded reads of every input file."""
