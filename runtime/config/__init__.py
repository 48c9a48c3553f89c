"""The configuration: the YAML loader (files, --set overrides, clear problems with file and
line), the schema of frozen dataclasses, and the value specs that check each key. It imports
the allowed values of enums from the modules that define them, and nothing else of the runtime.
"""
